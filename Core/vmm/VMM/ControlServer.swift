import EventLoop

#if canImport(Glibc)
    import Glibc
#endif

/// The VM's control socket: a Unix stream socket where each connection sends one command line
/// (`stop`, `pause`, `resume`, `status`, `registers`) and reads one JSON line back. Concierge and
/// `vmm stop|pause|resume|status PATH` use it, as crosvm's control socket.
final class ControlServer: @unchecked Sendable {
    let path: String
    private let fd: Int32
    private let handler: @Sendable (String) -> String

    /// Binds and listens at `path` (replacing a stale socket file, never another kind of file).
    init(path: String, handler: @escaping @Sendable (String) -> String) throws(VMMError) {
        var info = stat()
        if lstat(path, &info) == 0 {
            guard info.st_mode & S_IFMT == S_IFSOCK else {
                throw VMMError("the control socket path \(path) exists and is not a socket")
            }
            unlink(path)
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw VMMError("cannot create the control socket: \(String(cString: strerror(errno)))") }
        guard let address = UnixAddress(path) else {
            close(fd)
            throw VMMError("the control socket path \(path) is too long")
        }
        let bound = address.withSockaddr { bind(fd, $0, $1) }
        guard bound == 0, listen(fd, 8) == 0 else {
            let code = errno
            close(fd)
            throw VMMError("cannot listen on the control socket \(path): \(String(cString: strerror(code)))")
        }
        chmod(path, 0o600)
        self.fd = fd
        self.path = path
        self.handler = handler
    }

    deinit { close(fd) }

    /// Removes the socket file so that clients see the VM is gone (the serving thread lives on
    /// until the process exits).
    func removeSocketFile() { unlink(path) }

    /// Serves connections on a detached thread until the process ends.
    func start() throws(VMMError) {
        _ = try vmmThread(name: "control") { [self] in
            while true {
                let client = accept(fd, nil, nil)
                if client < 0 {
                    if errno == EINTR || errno == ECONNABORTED { continue }
                    return
                }
                serve(client)
            }
        }
    }

    /// Reads one line (at most 256 bytes, 5 s), answers it, and closes.
    private func serve(_ client: Int32) {
        defer { close(client) }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while line.count < 256 {
            let n = read(client, &byte, 1)
            if n < 0 && errno == EINTR { continue }
            guard n == 1, byte != UInt8(ascii: "\n") else { break }
            line.append(byte)
        }
        let command = String(decoding: line, as: UTF8.self).trimmingWhitespace
        let reply = Array((handler(command) + "\n").utf8)
        _ = reply.withUnsafeBytes { write(client, $0.baseAddress, $0.count) }
    }
}

/// A `sockaddr_un` for a filesystem path.
/// Sends `command` to the control socket at `path` and returns the reply line.
public func sendControlCommand(_ command: String, to path: String) throws(VMMError) -> String {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw VMMError("cannot create a socket: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    guard let address = UnixAddress(path) else { throw VMMError("the control socket path \(path) is too long") }
    guard address.withSockaddr({ connect(fd, $0, $1) }) == 0 else {
        throw VMMError("cannot connect to the VM's control socket \(path): \(String(cString: strerror(errno)))")
    }
    let request = Array((command + "\n").utf8)
    _ = request.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    var reply: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 512)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else { break }
        reply += buffer[0..<n]
    }
    return String(decoding: reply, as: UTF8.self).trimmingWhitespace
}

extension String {
    var trimmingWhitespace: String {
        let scalars = unicodeScalars.drop { $0 == " " || $0 == "\n" || $0 == "\r" || $0 == "\t" }
        var end = scalars.endIndex
        while end > scalars.startIndex, " \n\r\t".unicodeScalars.contains(scalars[scalars.index(before: end)]) {
            end = scalars.index(before: end)
        }
        return String(String.UnicodeScalarView(scalars[scalars.startIndex..<end]))
    }
}
