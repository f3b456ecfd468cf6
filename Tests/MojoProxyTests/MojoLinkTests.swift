import CLinux
import EventLoop
import Foundation
import MojoProxy
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Two mojo-proxies joined by a socketpair standing in for vsock: a client connects to the
/// guest's channel socket, a server accepts on the host's; bytes and descriptors cross.
final class ProxyPair {
    let base: String
    let host: MojoLink
    let guest: MojoLink
    let server: Int32
    var guestSocket: String { base + "/guest.sock" }
    var refusedSocket: String { base + "/refused.sock" }

    init() throws {
        var template = Array("/tmp/mojo-test-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw TestError("mkdtemp") }
        base = String(cString: made)
        server = try UnixSocket.listen(at: base + "/host.sock")
        _ = fcntl(server, F_SETFL, fcntl(server, F_GETFL) & ~O_NONBLOCK)
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
            throw TestError("socketpair")
        }
        // Channel 2 leads nowhere on the host: its clients must see their connection end.
        host = try MojoLink(
            side: .host, link: pair[0], channels: [1: base + "/host.sock", 2: base + "/missing.sock"],
            filesDirectory: base + "/host-files")
        guest = try MojoLink(
            side: .guest, link: pair[1], channels: [1: base + "/guest.sock", 2: base + "/refused.sock"],
            filesDirectory: base + "/guest-files")
        try host.start()
        try guest.start()
    }

    deinit {
        guest.stop()
        host.stop()
        close(server)
        try? FileManager.default.removeItem(atPath: base)
    }

    /// A client of the guest's channel socket and the host-side connection it leads to.
    func connection(channel path: String? = nil) throws -> (client: Int32, server: Int32) {
        let client = try Self.connect(path ?? guestSocket)
        var entry = pollfd(fd: server, events: Int16(POLLIN), revents: 0)
        guard poll(&entry, 1, 10_000) == 1 else { throw TestError("the host side never connected") }
        let accepted = accept(server, nil, nil)
        guard accepted >= 0 else { throw TestError("accept") }
        Self.timeouts(accepted)
        return (client, accepted)
    }

    static func connect(_ path: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard let address = UnixAddress(path), address.withSockaddr({ Glibc.connect(fd, $0, $1) }) == 0 else {
            close(fd)
            throw TestError("connect \(path): \(errno)")
        }
        timeouts(fd)
        return fd
    }

    static func timeouts(_ fd: Int32) {
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }
}

final class Counter: Sendable {
    let value = Atomic<Int>(0)
}

struct TestError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Writes all of `bytes`; reads exactly `count` bytes (or until EOF).
func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
    var done = 0
    while done < bytes.count {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + done, bytes.count - done) }
        guard n > 0 else { return false }
        done += n
    }
    return true
}

func readExactly(_ fd: Int32, _ count: Int) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: count)
    var done = 0
    while done < count {
        let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + done, count - done) }
        guard n > 0 else { break }
        done += n
    }
    return Array(bytes.prefix(done))
}

/// Sends one byte with `fds` attached (SCM_RIGHTS).
func sendFDs(_ socket: Int32, _ fds: [Int32]) -> Bool {
    let byte: [UInt8] = [0x2A]
    return byte.withUnsafeBytes { bytes in
        fds.withUnsafeBufferPointer {
            clinux_send_with_fds(socket, bytes.baseAddress, 1, $0.baseAddress, Int32($0.count))
        }
    } == 1
}

/// Receives one byte and the descriptors that came with it (blocking up to the timeout).
func receiveFDs(_ socket: Int32) -> [Int32] {
    var entry = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
    guard poll(&entry, 1, 10_000) == 1 else { return [] }
    var byte = [UInt8](repeating: 0, count: 1)
    var fds = [Int32](repeating: -1, count: 8)
    var count: Int32 = 0
    var truncated: Int32 = 0
    let n = byte.withUnsafeMutableBytes { bytes in
        fds.withUnsafeMutableBufferPointer {
            clinux_recv_with_fds(socket, bytes.baseAddress, 1, $0.baseAddress, 8, &count, &truncated)
        }
    }
    guard n == 1 else { return [] }
    let received = Array(fds.prefix(Int(count)))
    for fd in received { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) }
    return received
}

@Suite("mojo-proxy link", .serialized)
struct MojoLinkTests {
    @Test("bytes cross both ways; closing either end reaches the other")
    func bytesAndClose() throws {
        let pair = try ProxyPair()
        let (client, server) = try pair.connection()
        #expect(writeAll(client, Array("ping".utf8)))
        #expect(readExactly(server, 4) == Array("ping".utf8))
        #expect(writeAll(server, Array("pong!".utf8)))
        #expect(readExactly(client, 5) == Array("pong!".utf8))
        close(client)
        var byte: UInt8 = 0
        #expect(read(server, &byte, 1) == 0)
        close(server)

        let (client2, server2) = try pair.connection()
        close(server2)
        #expect(read(client2, &byte, 1) == 0)
        close(client2)
    }

    @Test("half-close either way: the other end reads to its end and still answers, then both ends close")
    func halfClose() throws {
        let pair = try ProxyPair()
        // The client stops writing; the server sees the end, answers, and closes.
        let (client, server) = try pair.connection()
        #expect(writeAll(client, Array("request".utf8)))
        shutdown(client, Int32(SHUT_WR))
        #expect(readExactly(server, 100) == Array("request".utf8), "the server reads the request, then its end")
        #expect(writeAll(server, Array("answer".utf8)))
        close(server)
        #expect(readExactly(client, 100) == Array("answer".utf8), "the answer comes after the client's half-close")
        close(client)
        // The server stops writing first; the client's bytes still reach it.
        let (client2, server2) = try pair.connection()
        #expect(writeAll(server2, Array("hello".utf8)))
        shutdown(server2, Int32(SHUT_WR))
        #expect(readExactly(client2, 100) == Array("hello".utf8))
        #expect(writeAll(client2, Array("late reply".utf8)))
        shutdown(client2, Int32(SHUT_WR))
        #expect(readExactly(server2, 100) == Array("late reply".utf8))
        close(client2)
        close(server2)
        var waited = 0
        while pair.host.openCount + pair.guest.openCount > 0, waited < 250 {
            usleep(20_000)
            waited += 1
        }
        #expect(pair.host.openCount + pair.guest.openCount == 0, "the proxies still hold the connection")
    }

    @Test("32 MiB through a slow reader arrive intact; the proxies' queues stay bounded")
    func backPressure() throws {
        let pair = try ProxyPair()
        let (client, server) = try pair.connection()
        var data = [UInt8](repeating: 0, count: 32 << 20)
        for i in data.indices { data[i] = UInt8(truncatingIfNeeded: i &* 2_654_435_761 >> 13) }
        let payload = data
        let written = Counter()
        let writer = Thread {
            var offset = 0
            while offset < payload.count {
                let end = min(payload.count, offset + 65536)
                guard writeAll(client, Array(payload[offset..<end])) else { return }
                offset = end
                written.value.store(offset, ordering: .relaxed)
            }
        }
        writer.start()
        // No one reads for a while: the writer must be held back (windows and socket buffers
        // fill), not the proxies take all 32 MiB into memory.
        usleep(500_000)
        #expect(
            written.value.load(ordering: .relaxed) < 16 << 20,
            "the proxies took \(written.value.load(ordering: .relaxed)) bytes")
        let received = readExactly(server, data.count)
        #expect(received.count == data.count)
        #expect(received == data)
        close(client)
        close(server)
    }

    @Test("a channel whose host socket refuses: the guest's client sees its connection end")
    func refused() throws {
        let pair = try ProxyPair()
        let client = try ProxyPair.connect(pair.refusedSocket)
        var byte: UInt8 = 0
        #expect(read(client, &byte, 1) == 0)
        close(client)
        // The proxies keep serving other connections.
        let (c, s) = try pair.connection()
        #expect(writeAll(c, [1, 2, 3]) && readExactly(s, 3) == [1, 2, 3])
        close(c)
        close(s)
    }

    @Test("a pipe's read end and a socket passed across work as their originals")
    func passedDescriptors() throws {
        let pair = try ProxyPair()
        let (client, server) = try pair.connection()
        var pipeFDs: [Int32] = [-1, -1]
        #expect(pipe(&pipeFDs) == 0)
        var sockets: [Int32] = [-1, -1]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &sockets) == 0)
        #expect(sendFDs(client, [pipeFDs[0], sockets[1]]))
        close(pipeFDs[0])
        close(sockets[1])
        let received = receiveFDs(server)
        #expect(received.count == 2)
        guard received.count == 2 else { return }
        // The pipe: what the client writes, the server reads, then end of file.
        #expect(writeAll(pipeFDs[1], Array("through the pipe".utf8)))
        close(pipeFDs[1])
        #expect(readExactly(received[0], 64) == Array("through the pipe".utf8))
        // The socket: both ways.
        #expect(writeAll(received[1], Array("to the client".utf8)))
        #expect(readExactly(sockets[0], 13) == Array("to the client".utf8))
        #expect(writeAll(sockets[0], Array("back".utf8)))
        #expect(readExactly(received[1], 4) == Array("back".utf8))
        for fd in received + [sockets[0], client, server] { close(fd) }
    }

    @Test("a descriptor that cannot cross (an eventfd) fails the connection, never silently")
    func unsupportedDescriptor() throws {
        let pair = try ProxyPair()
        let (client, server) = try pair.connection()
        let event = eventfd(0, Int32(EFD_CLOEXEC))
        #expect(sendFDs(client, [event]))
        close(event)
        var byte: UInt8 = 0
        #expect(read(server, &byte, 1) == 0)
        close(client)
        close(server)
    }

    @Test("a regular file passed either way is a real descriptor: fstat, pread, pwrite, ftruncate reach the original")
    func passedFiles() throws {
        let pair = try ProxyPair()
        let (client, server) = try pair.connection()
        for (sender, receiver, name) in [(server, client, "host"), (client, server, "guest")] {
            let path = pair.base + "/\(name)-file"
            let original = open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0o600)
            let content = Array("the \(name)'s file".utf8)
            #expect(writeAll(original, content))
            #expect(sendFDs(sender, [original]))
            close(original)
            let received = receiveFDs(receiver)
            #expect(received.count == 1, "the \(name)'s file did not arrive")
            guard let fd = received.first else { continue }

            var info = stat()
            #expect(fstat(fd, &info) == 0)
            #expect(info.st_mode & S_IFMT == S_IFREG)
            #expect(info.st_size == content.count)
            var buffer = [UInt8](repeating: 0, count: 64)
            let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
            #expect(n == content.count && Array(buffer.prefix(max(0, n))) == content)

            // Writes, larger than one message, land in the original; so does a truncation.
            var large = [UInt8](repeating: 0, count: 1 << 20)
            for i in large.indices { large[i] = UInt8(truncatingIfNeeded: i &* 31 >> 3) }
            let written = large.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 100) }
            #expect(written == large.count)
            #expect(fstat(fd, &info) == 0 && info.st_size == 100 + large.count)
            #expect(lseek(fd, 100, SEEK_SET) == 100)
            #expect(readExactly(fd, large.count) == large)
            #expect(ftruncate(fd, 50) == 0)
            close(fd)

            let check = open(path, O_RDONLY | O_CLOEXEC)
            #expect(fstat(check, &info) == 0 && info.st_size == 50)
            #expect(readExactly(check, 64) == Array(content + [UInt8](repeating: 0, count: 50 - content.count)))
            close(check)
        }
        close(client)
        close(server)
    }

    @Test("a file sent read-only stays read-only across; its stand-in goes when the receiver closes it")
    func readOnlyFile() throws {
        let pair = try ProxyPair()
        let (client, server) = try pair.connection()
        let path = pair.base + "/read-only"
        let writer = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0o600)
        #expect(writeAll(writer, Array("keep".utf8)))
        close(writer)
        let original = open(path, O_RDONLY | O_CLOEXEC)
        #expect(sendFDs(server, [original]))
        close(original)
        let received = receiveFDs(client)
        guard let fd = received.first else {
            Issue.record("the file did not arrive")
            return
        }
        #expect(write(fd, "x", 1) == -1 && errno == EBADF)
        #expect(ftruncate(fd, 0) == -1)
        #expect(readExactly(fd, 16) == Array("keep".utf8))
        close(fd)
        // The host's proxy closes the original once the guest's stand-in is released.
        var waited = 0
        while pair.host.openCount > 1, waited < 100 {
            usleep(20_000)
            waited += 1
        }
        #expect(pair.host.openCount == 1, "the host still holds \(pair.host.openCount) handles")
        close(client)
        close(server)
    }

    @Test("100 connections at once, each echoing its own bytes")
    func concurrent() throws {
        let pair = try ProxyPair()
        var connections: [(Int32, Int32)] = []
        for _ in 0..<100 { connections.append(try pair.connection()) }
        for (i, (client, _)) in connections.enumerated() { #expect(writeAll(client, Array("c\(i)".utf8))) }
        for (i, (_, server)) in connections.enumerated() {
            let expected = Array("c\(i)".utf8)
            #expect(readExactly(server, expected.count) == expected)
        }
        for (client, server) in connections {
            close(client)
            close(server)
        }
    }

    @Test("the link ending closes every proxied connection")
    func linkEnds() async throws {
        let pair = try ProxyPair()
        let (client, server) = try pair.connection()
        pair.host.stop()
        #expect(await pair.guest.ended().contains("closed the link"))
        var byte: UInt8 = 0
        #expect(read(client, &byte, 1) == 0)
        #expect(read(server, &byte, 1) == 0)
        close(client)
        close(server)
    }
}
