import GRPCCore
import GRPCNIOTransportHTTP2Posix
import GuestProtocol

/// Where the host reaches one of a guest's gRPC services.
public enum GuestEndpoint: Sendable, CustomStringConvertible {
    /// A plain Unix socket that leads to the service (vmm's per-port listener, or maitred run
    /// by hand with `--listen unix:PATH`).
    case socket(String)
    /// A VM's vsock socket (`CONNECT <port>` convention) and the guest port.
    case vsock(socket: String, port: UInt32)

    /// vsock ports of the guest's services (ARCHITECTURE.md).
    public static let maitredPort: UInt32 = 8888
    public static let shellPort: UInt32 = 9001
    public static let startupListenerPort: UInt32 = 7777

    public var description: String {
        switch self {
        case .socket(let path): path
        case .vsock(let socket, let port): "guest vsock port \(port) via \(socket)"
        }
    }

    /// Runs `body` with a gRPC client connected to the endpoint. A refused guest port or a
    /// missing socket comes back as a ``GuestClientError`` that says so.
    public func withClient<Result: Sendable>(
        _ body: (GRPCClient<HTTP2ClientTransport.Posix>) async throws -> Result
    ) async throws -> Result {
        var bridge: VsockBridge?
        let path: String
        switch self {
        case .socket(let socket): path = socket
        case .vsock(let socket, let port):
            let opened = try VsockBridge(vsockSocket: socket, port: port)
            bridge = opened
            path = opened.path
        }
        defer { bridge?.close() }
        do {
            return try await withGRPCClient(
                transport: .http2NIOPosix(target: .unixDomainSocket(path: path), transportSecurity: .plaintext)
            ) { client in try await body(client) }
        } catch let error as RPCError where error.code == .unavailable {
            // gRPC only sees a closed connection; the bridge knows why.
            if let failure = bridge?.failure { throw GuestClientError.invalid(failure) }
            throw GuestClientError.invalid("cannot reach \(self): \(error.message)")
        }
    }
}
