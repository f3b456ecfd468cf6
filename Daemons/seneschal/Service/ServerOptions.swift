import DBus

#if canImport(Glibc)
    import Glibc
#endif

/// What StartServer asked for: where the server listens and whose files it serves as.
public struct ServerOptions: Sendable {
    /// Where guests reach the server.
    public enum Endpoint: Sendable, Equatable {
        /// A Unix socket seneschal creates at this path. vmm hands a guest's connections to host
        /// vsock port P to `<vsock socket>_P`, so this is how a VM behind vmm reaches it.
        case socket(path: String)
        /// A socket the caller passed (listening: a session per connection; connected: one session).
        case descriptor(DBusFileDescriptor)
        /// An AF_VSOCK port on this host (vhost-vsock guests), accepting only `cid`.
        case vsock(port: UInt32, cid: UInt32)
    }

    public var endpoint: Endpoint
    /// The user and group the server runs as; new files in writable shares belong to them.
    public var uid: UInt32
    public var gid: UInt32

    public init(endpoint: Endpoint, uid: UInt32, gid: UInt32) {
        self.endpoint = endpoint
        self.uid = uid
        self.gid = gid
    }

    /// The first port of seneschal's servers (ARCHITECTURE.md); lower ports are the guest
    /// services' (maitred 8890, garcon 8889, shell 9001).
    public static let firstPort: UInt32 = 16384

    /// Checks what only the caller's own request can get wrong.
    func validate() throws(SeneschalError) {
        switch endpoint {
        case .socket(let path):
            guard path.hasPrefix("/") else { throw .invalid("the socket path must be absolute: \(path)") }
            guard path.utf8.count < 108 else {
                throw .invalid("the socket path is too long (at most 107 bytes): \(path)")
            }
        case .descriptor(let passed):
            var info = stat()
            guard fstat(passed.fd, &info) == 0, info.st_mode & S_IFMT == S_IFSOCK else {
                throw .invalid("the descriptor passed is not a socket")
            }
        case .vsock(let port, let cid):
            guard port >= Self.firstPort, port != UInt32.max else {
                throw .invalid("vsock port \(port) is not a seneschal port (\(Self.firstPort) and up)")
            }
            // 1 (VMADDR_CID_LOCAL) is this host over vsock_loopback; 0 and ANY name no peer.
            guard cid != 0, cid != UInt32.max else { throw .invalid("CID \(cid) names no peer to accept") }
        }
    }
}
