import GRPCNIOTransportCore
import GRPCNIOTransportHTTP2Posix

/// Where a guest agent (maitred, garcon) listens or calls: a vsock port (in a guest) or a Unix
/// socket (tests, or an agent run by hand). Written `vsock:PORT`, `vsock:CID:PORT` or `unix:PATH`.
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
    public var listenAddress: SocketAddress {
        switch self {
        case .vsock(let cid, let port): .vsock(contextID: .init(rawValue: cid), port: .init(rawValue: port))
        case .unix(let path): .unixDomainSocket(path: path)
        }
    }
}

extension AgentAddress {
    /// A plaintext HTTP/2 client transport to this address (vsock or Unix).
    public func clientTransport() throws -> HTTP2ClientTransport.Posix {
        switch self {
        case .vsock(let cid, let port):
            try .http2NIOPosix(
                target: .vsock(contextID: .init(rawValue: cid), port: .init(rawValue: port)),
                transportSecurity: .plaintext)
        case .unix(let path):
            try .http2NIOPosix(target: .unixDomainSocket(path: path), transportSecurity: .plaintext)
        }
    }
}
