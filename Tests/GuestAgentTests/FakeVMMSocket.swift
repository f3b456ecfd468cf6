import EventLoop
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// vmm's side of the `CONNECT <port>\n` exchange, for tests on a machine that cannot boot a
/// guest: a known port is answered `OK <n>\n` and spliced to a Unix socket; an unknown one is
/// closed without a word, as vmm does when the guest resets the connection; a silent one gets
/// vmm's `ERROR <why>\n` for a guest that never answered.
final class FakeVMMSocket: Sendable {
    let path: String
    private let listener: Int32
    private let ports: [UInt32: String]
    private let silentPorts: Set<UInt32>
    private let seen = Mutex<[String]>([])

    init(path: String, ports: [UInt32: String], silentPorts: Set<UInt32> = []) throws {
        self.path = path
        self.ports = ports
        self.silentPorts = silentPorts
        listener = Self.blocking(try UnixSocket.listen(at: path, backlog: 8))
        let listener = listener
        Thread.detachNewThread { [self] in
            while true {
                let fd = accept(listener, nil, nil)
                guard fd >= 0 else { return }
                Thread.detachNewThread { self.serve(fd) }
            }
        }
    }

    var requests: [String] { seen.withLock { $0 } }

    func stop() {
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    private func serve(_ fd: Int32) {
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while recv(fd, &byte, 1, 0) == 1, byte != UInt8(ascii: "\n") { line.append(byte) }
        let request = String(decoding: line, as: UTF8.self)
        seen.withLock { $0.append(request) }
        if request.hasPrefix("CONNECT "), let port = UInt32(request.dropFirst(8)), silentPorts.contains(port) {
            let error = Array("ERROR the guest did not accept within 5000 ms\n".utf8)
            _ = error.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            close(fd)
            return
        }
        guard request.hasPrefix("CONNECT "), let port = UInt32(request.dropFirst(8)), let target = ports[port],
            let upstream = (try? UnixSocket.connect(to: target)).map(Self.blocking)
        else {
            close(fd)
            return
        }
        let ok = Array("OK 1073741824\n".utf8)
        _ = ok.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        Thread.detachNewThread { Self.pump(fd, upstream) }
        Self.pump(upstream, fd)
    }

    private static func pump(_ from: Int32, _ to: Int32) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(from, $0.baseAddress, $0.count) }
            guard n > 0 else { break }
            _ = buffer.withUnsafeBytes { send(to, $0.baseAddress, n, Int32(MSG_NOSIGNAL)) }
        }
        shutdown(to, Int32(SHUT_WR))
    }

    /// UnixSocket hands out non-blocking sockets; this stand-in serves each on a thread of its own.
    private static func blocking(_ fd: Int32) -> Int32 {
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        return fd
    }
}
