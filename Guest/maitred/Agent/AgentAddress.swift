import GRPCNIOTransportCore

/// Where maitred listens or calls: a vsock port (in a guest) or a Unix socket (tests, or maitred
/// run by hand). Written `vsock:PORT`, `vsock:CID:PORT` or `unix:PATH`.
public enum AgentAddress: Sendable, Equatable, CustomStringConvertible {
    case vsock(cid: UInt32, port: UInt32)
    case unix(String)

    /// Any CID: how a guest listens.
    public static let anyCID = UInt32.max

    public init?(_ text: String) {
        if text.hasPrefix("unix:") {
            let path = String(text.dropFirst(5))
            guard !path.isEmpty else { return nil }
            self = .unix(path)
            return
        }
        guard text.hasPrefix("vsock:") else { return nil }
        let parts = text.dropFirst(6).split(separator: ":", omittingEmptySubsequences: false).map { UInt32($0) }
        switch parts.count {
        case 1:
            guard let port = parts[0] else { return nil }
            self = .vsock(cid: Self.anyCID, port: port)
        case 2:
            guard let cid = parts[0], let port = parts[1] else { return nil }
            self = .vsock(cid: cid, port: port)
        default: return nil
        }
    }

    public var description: String {
        switch self {
        case .vsock(let cid, let port): cid == Self.anyCID ? "vsock:\(port)" : "vsock:\(cid):\(port)"
        case .unix(let path): "unix:\(path)"
        }
    }

    /// The address to bind a server to.
    var listenAddress: SocketAddress {
        switch self {
        case .vsock(let cid, let port): .vsock(contextID: .init(rawValue: cid), port: .init(rawValue: port))
        case .unix(let path): .unixDomainSocket(path: path)
        }
    }
}
