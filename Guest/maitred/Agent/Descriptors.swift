import CGuestSystem
import GRPCCore
import NIOCore
import NIOPosix

#if canImport(Glibc)
    import Glibc
#endif

/// A pipe whose two ends are close-on-exec (posix_spawn's dup2 clears that on the child's copy).
struct Pipe {
    let readEnd: Int32
    let writeEnd: Int32

    init() throws(RPCError) {
        var fds: [Int32] = [-1, -1]
        let result = cgs_pipe(&fds)
        guard result == 0 else { throw AgentError.system("pipe2", errno: -result) }
        readEnd = fds[0]
        writeEnd = fds[1]
    }
}

/// Byte streams over pipes and PTYs through NIO, so that reading never blocks a thread of the
/// cooperative pool and a slow reader on the host pushes back instead of piling up data here.
enum Descriptors {
    typealias Channel = NIOAsyncChannel<ByteBuffer, ByteBuffer>

    /// Takes ownership of `fd` (a pipe end or a PTY master) as an async channel: `input` for one it
    /// reads, `output` for one it writes, both for a PTY master.
    static func channel(reading input: Int32?, writing output: Int32?) async throws -> Channel {
        let bootstrap = NIOPipeBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        let initializer: @Sendable (any NIOCore.Channel) -> EventLoopFuture<Channel> = { channel in
            channel.eventLoop.makeCompletedFuture {
                try Channel(
                    wrappingChannelSynchronously: channel,
                    configuration: .init(isOutboundHalfClosureEnabled: true))
            }
        }
        switch (input, output) {
        case (let input?, let output?):
            return try await bootstrap.takingOwnershipOfDescriptors(
                input: input, output: output, channelInitializer: initializer)
        case (let input?, nil):
            return try await bootstrap.takingOwnershipOfDescriptor(input: input, channelInitializer: initializer)
        case (nil, let output?):
            return try await bootstrap.takingOwnershipOfDescriptor(output: output, channelInitializer: initializer)
        case (nil, nil):
            throw AgentError.invalid("internal: a channel needs a descriptor")
        }
    }

    /// Reads `fd` to its end (EOF, or EIO from a PTY whose other side is closed) and closes it.
    static func readAll(_ fd: Int32, _ body: (ByteBuffer) async throws -> Void) async throws {
        try await channel(reading: fd, writing: nil).executeThenClose { inbound, _ in
            do {
                for try await chunk in inbound { try await body(chunk) }
            } catch let error as IOError where error.errnoCode == EIO {
                // A PTY master reads EIO once every slave descriptor is closed: that is its end.
            }
        }
    }

    /// Writes `bytes` to `fd`, then closes it (the reader sees end of file).
    static func writeAll(_ fd: Int32, _ bytes: [UInt8]) async throws {
        let channel = try await channel(reading: nil, writing: fd)
        try await channel.executeThenClose { _, _ in
            try await write(bytes, to: channel)
            try await endWriting(channel)
        }
    }

    /// Writes `bytes` and returns once they are in the descriptor, not merely queued: NIO fails
    /// the writes still pending when a channel closes, so a queued tail would be lost.
    static func write(_ bytes: [UInt8], to channel: Channel) async throws {
        guard !bytes.isEmpty else { return }
        try await channel.channel.writeAndFlush(ByteBuffer(bytes: bytes)).get()
    }

    /// Closes the writing side (the reader sees end of file) once every write has completed.
    static func endWriting(_ channel: Channel) async throws {
        try await channel.channel.close(mode: .output).get()
    }

    /// Opens /dev/null for reading and writing (close-on-exec).
    static func openNull() throws(RPCError) -> Int32 {
        let fd = open("/dev/null", O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw AgentError.system("open /dev/null", errno: errno) }
        return fd
    }
}

/// Collects a stream's bytes up to a limit, counting (and dropping) what comes after it.
struct BoundedOutput {
    let limit: Int
    private(set) var bytes: [UInt8] = []
    private(set) var truncated = false

    init(limit: Int) { self.limit = limit }

    mutating func append(_ chunk: ByteBuffer) {
        let room = limit - bytes.count
        if chunk.readableBytes > room { truncated = true }
        guard room > 0 else { return }
        bytes += chunk.readableBytesView.prefix(room)
    }
}
