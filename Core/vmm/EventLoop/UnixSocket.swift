import CLinux

#if canImport(Glibc)
    import Glibc
#endif

/// A `sockaddr_un` for a filesystem path.
public struct UnixAddress: Sendable {
    private var storage = sockaddr_un()

    /// Nil when `path` is empty or longer than `sun_path` holds.
    public init?(_ path: String) {
        storage.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: storage.sun_path)
        guard !bytes.isEmpty, bytes.count < capacity, !bytes.contains(0) else { return nil }
        withUnsafeMutableBytes(of: &storage.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
    }

    public func withSockaddr<T>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
        var copy = storage
        return withUnsafePointer(to: &copy) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                body($0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
    }
}

/// Non-blocking, close-on-exec Unix stream sockets for event-loop code.
public enum UnixSocket {
    static let streamFlags = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue)

    /// Listens at `path`, replacing a stale socket file there (never another kind of file).
    public static func listen(at path: String, backlog: Int32 = 64, mode: mode_t = 0o600) throws(EventLoopError)
        -> Int32
    {
        guard let address = UnixAddress(path) else {
            throw .system("the socket path \(path) is too long", errno: EINVAL)
        }
        var info = stat()
        if lstat(path, &info) == 0 {
            guard info.st_mode & S_IFMT == S_IFSOCK else {
                throw .system("listening at \(path), which exists and is not a socket", errno: EEXIST)
            }
            unlink(path)
        }
        let fd = socket(AF_UNIX, streamFlags, 0)
        guard fd >= 0 else { throw .system("socket", errno: errno) }
        guard address.withSockaddr({ bind(fd, $0, $1) }) == 0, Glibc.listen(fd, backlog) == 0 else {
            let code = errno
            close(fd)
            throw .system("listening at \(path)", errno: code)
        }
        chmod(path, mode)
        return fd
    }

    /// Connects to the listener at `path`; the socket is non-blocking once connected.
    public static func connect(to path: String) throws(EventLoopError) -> Int32 {
        guard let address = UnixAddress(path) else {
            throw .system("the socket path \(path) is too long", errno: EINVAL)
        }
        let fd = socket(AF_UNIX, streamFlags, 0)
        guard fd >= 0 else { throw .system("socket", errno: errno) }
        guard address.withSockaddr({ Glibc.connect(fd, $0, $1) }) == 0 else {
            let code = errno
            close(fd)
            throw .system("connecting to \(path)", errno: code)
        }
        return fd
    }

    /// The send buffer ``setSendBuffer(_:to:)`` asks for unless told otherwise.
    public static let streamingSendBufferBytes: Int32 = 1 << 20

    /// Asks for a send buffer of `bytes` on `fd` (the kernel caps the request at
    /// net.core.wmem_max, about 208 KiB by default, and doubles it); by default a large one.
    ///
    /// Whatever streams into a VM's vsock socket wants a large one: a Unix stream socket's writer
    /// is woken only once less than a quarter of its send buffer is still queued, so with the
    /// default the device can read the socket dry while the writer wakes up to refill it. In the
    /// nested testbed a 2 MiB buffer took one host → guest stream from 39 to 55 MiB/s.
    public static func setSendBuffer(_ fd: Int32, to bytes: Int32 = streamingSendBufferBytes) {
        var size = bytes
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
    }

    /// Accepts one pending connection (non-blocking, close-on-exec), or nil when none is waiting.
    public static func accept(_ listener: Int32) -> Int32? {
        while true {
            let fd = accept4(listener, nil, nil, Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue))
            if fd >= 0 { return fd }
            if errno == EINTR || errno == ECONNABORTED { continue }
            return nil
        }
    }
}
