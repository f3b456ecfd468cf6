import CGuestSystem
import Foundation
import GRPCCore
import GuestProtocol
import NIOCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// One shell session's process and its descriptors: a PTY master, or three pipes.
///
/// Host input goes through a stream to the one task that owns the writing side, so a write
/// never races the close that ends it.
final class ShellProcess: Sendable {
    let pid: pid_t
    private let tty: Bool
    /// With a PTY: the master (NIO owns it while pumping) and a duplicate for window sizes.
    /// With pipes: stdin's write end and the read ends of stdout and stderr.
    private let master: Int32
    private let control: Int32
    private let stdinFD: Int32
    private let stdoutFD: Int32
    private let stderrFD: Int32

    private enum Input {
        case bytes([UInt8])
        case close
    }

    private let inputs: AsyncStream<Input>
    private let inputSink: AsyncStream<Input>.Continuation
    /// Host input queued and not yet written to the process, and whether pumping has ended.
    private let pendingInput = Atomic<Int>(0)
    private let pumpEnded = Atomic<Bool>(false)
    /// Beyond this much queued input the host's next message waits (and gRPC's flow control
    /// then holds the host), so a process that does not read cannot make maitred buffer without
    /// bound.
    static let inputLimit = 1 << 20

    private init(pid: pid_t, tty: Bool, master: Int32 = -1, stdin: Int32 = -1, stdout: Int32 = -1, stderr: Int32 = -1) {
        self.pid = pid
        self.tty = tty
        self.master = master
        control = tty ? dup(master) : -1
        stdinFD = stdin
        stdoutFD = stdout
        stderrFD = stderr
        (inputs, inputSink) = AsyncStream.makeStream(of: Input.self)
    }

    deinit {
        if control >= 0 { close(control) }
    }

    /// Starts the session's process: the request's command or a login shell.
    static func start(_ start: Vmtools_Guest_ShellStart, reaper: ProcessReaper) throws(RPCError) -> ShellProcess {
        var environment = ProcessSpawner.defaultEnvironment
        environment["TERM"] = start.tty ? "xterm-256color" : "dumb"
        for (key, value) in start.env { environment[key] = value }
        let argv = start.argv.isEmpty ? ["/bin/sh", "-l"] : start.argv
        var spawn = SpawnRequest(argv: argv, environment: environment, workingDirectory: start.workingDirectory)

        if start.tty {
            var master: Int32 = -1
            var path = [CChar](repeating: 0, count: 128)
            let opened = cgs_open_pty(&master, &path, path.count)
            guard opened == 0 else { throw AgentError.system("opening a pseudo-terminal", errno: -opened) }
            if start.hasSize { _ = cgs_set_window_size(master, start.size.rows, start.size.columns) }
            spawn.terminal = String(decoding: path.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            do {
                let pid = try reaper.spawn(spawn)
                return ShellProcess(pid: pid, tty: true, master: master)
            } catch {
                close(master)
                throw error
            }
        }

        let input = try Pipe()
        let output = try Pipe()
        let errors = try Pipe()
        (spawn.stdin, spawn.stdout, spawn.stderr) = (input.readEnd, output.writeEnd, errors.writeEnd)
        defer { [input.readEnd, output.writeEnd, errors.writeEnd].forEach { close($0) } }
        do {
            let pid = try reaper.spawn(spawn)
            return ShellProcess(
                pid: pid, tty: false, stdin: input.writeEnd, stdout: output.readEnd, stderr: errors.readEnd)
        } catch {
            [input.writeEnd, output.readEnd, errors.readEnd].forEach { close($0) }
            throw error
        }
    }

    /// Moves bytes until the process's output ends: its output to the host, the host's input to
    /// it. Cancelled, it closes every descriptor.
    func pump(to writer: ShellOutputWriter) async throws {
        defer {
            pumpEnded.store(true, ordering: .releasing)
            inputSink.finish()
        }
        if tty {
            let channel = try await Descriptors.channel(reading: master, writing: dup(master))
            try await channel.executeThenClose { inbound, _ in
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await self.feed(channel) }
                    do {
                        for try await chunk in inbound { try await writer.write(.stdout(chunk)) }
                    } catch let error as IOError where error.errnoCode == EIO {}
                    group.cancelAll()
                }
            }
            return
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                let channel = try await Descriptors.channel(reading: nil, writing: self.stdinFD)
                try await channel.executeThenClose { _, _ in try await self.feed(channel) }
            }
            async let out: Void = Descriptors.readAll(stdoutFD) { try await writer.write(.stdout($0)) }
            async let err: Void = Descriptors.readAll(stderrFD) { try await writer.write(.stderr($0)) }
            _ = try await (out, err)
            group.cancelAll()
        }
    }

    /// Writes the host's input in order, each write awaited to its end so that closing the
    /// channel never drops a queued tail.
    private func feed(_ channel: Descriptors.Channel) async throws {
        for await input in inputs {
            switch input {
            case .bytes(let bytes):
                try await Descriptors.write(bytes, to: channel)
                pendingInput.subtract(bytes.count, ordering: .relaxed)
            case .close where tty: try await Descriptors.write([0x04], to: channel)  // VEOF
            case .close:
                try await Descriptors.endWriting(channel)
                return
            }
        }
    }

    /// Applies one message from the host.
    func handle(_ message: Vmtools_Guest_ShellInput) async throws {
        switch message.input {
        case .stdin(let bytes):
            pendingInput.add(bytes.count, ordering: .relaxed)
            inputSink.yield(.bytes([UInt8](bytes)))
            while pendingInput.load(ordering: .relaxed) > Self.inputLimit && !pumpEnded.load(ordering: .acquiring) {
                try await Task.sleep(for: .milliseconds(5))
            }
        case .stdinClosed: inputSink.yield(.close)
        case .resize(let size):
            if tty { _ = cgs_set_window_size(control, size.rows, size.columns) }
        case .signal(let number):
            guard (1..<65).contains(number) else { throw AgentError.invalid("\(number) is not a signal number") }
            signal(number)
        case .start: throw AgentError.invalid("the shell session has already started")
        case nil: break
        }
    }

    /// Delivers a signal to the session (its whole process group with a PTY).
    func signal(_ number: Int32) {
        kill(tty ? -pid : pid, number)
    }
}

extension Vmtools_Guest_ShellOutput {
    static func stdout(_ chunk: ByteBuffer) -> Self {
        var output = Self()
        output.stdout = Data(chunk.readableBytesView)
        return output
    }

    static func stderr(_ chunk: ByteBuffer) -> Self {
        var output = Self()
        output.stderr = Data(chunk.readableBytesView)
        return output
    }
}
