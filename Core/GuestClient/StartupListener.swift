import GRPCCore
import GRPCNIOTransportCore
import GRPCNIOTransportHTTP2Posix
import GuestProtocol
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The host's startup listener: serves VmReady and returns the first call. For vmm's VMs it
/// listens on a Unix socket (vmm forwards the guest's connections to host port 7777 to
/// `<vsock socket>_7777`); for a kernel vsock (vhost-vsock, QEMU) on AF_VSOCK port 7777.
public enum StartupListener {
    /// Waits up to `timeout` for maitred's VmReady on the Unix socket `path` (which must not
    /// exist yet; it is removed afterwards).
    public static func waitForReady(on path: String, timeout: Duration) async throws -> Vmtools_Guest_VmReadyRequest {
        defer { unlink(path) }
        return try await waitForReady(at: .unixDomainSocket(path: path), timeout: timeout)
    }

    /// Waits up to `timeout` for VmReady on the host's AF_VSOCK `port` (any CID).
    public static func waitForReady(vsockPort port: UInt32, timeout: Duration) async throws
        -> Vmtools_Guest_VmReadyRequest
    {
        try await waitForReady(at: .vsock(contextID: .any, port: .init(rawValue: port)), timeout: timeout)
    }

    private static func waitForReady(
        at address: GRPCNIOTransportCore.SocketAddress, timeout: Duration
    ) async throws -> Vmtools_Guest_VmReadyRequest {
        let path = "\(address)"
        let service = ReadyService()
        let server = GRPCServer(
            transport: .http2NIOPosix(address: address, transportSecurity: .plaintext),
            services: [service])
        // Not a child of the group: cancelling a server whose accepted connections are still
        // queued traps in NIO ("Deinited NIOAsyncWriter without calling finish()", when several
        // guests call at once). It ends by graceful shutdown instead, and is awaited.
        let serving = Task { try await server.serve() }
        return try await withThrowingTaskGroup(of: Vmtools_Guest_VmReadyRequest?.self) { group in
            group.addTask {
                try await serving.value
                return nil
            }
            group.addTask { await service.firstCall() }
            group.addTask {
                try await Task.sleep(for: timeout)
                throw GuestClientError.timedOut("no VmReady on \(path) within \(timeout)")
            }
            defer {
                server.beginGracefulShutdown()
                group.cancelAll()
            }
            while let result = try await group.next() {
                if let request = result { return request }
            }
            throw GuestClientError.invalid("the startup listener on \(path) stopped before VmReady")
        }
    }
}

/// Answers VmReady and hands the first request to whoever waits.
private final class ReadyService: Vmtools_Guest_StartupListener.SimpleServiceProtocol {
    private struct State {
        var request: Vmtools_Guest_VmReadyRequest?
        var waiter: CheckedContinuation<Vmtools_Guest_VmReadyRequest?, Never>?
    }

    private let state = Mutex(State())

    func vmReady(request: Vmtools_Guest_VmReadyRequest, context: ServerContext) async throws -> Vmtools_Guest_Empty {
        let waiter = state.withLock { state in
            if state.request == nil { state.request = request }
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: request)
        return Vmtools_Guest_Empty()
    }

    /// The first VmReady, or nil once the waiting task is cancelled.
    func firstCall() async -> Vmtools_Guest_VmReadyRequest? {
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let ready: Vmtools_Guest_VmReadyRequest?? = state.withLock { state in
                    if let request = state.request { return .some(request) }
                    if Task.isCancelled { return .some(nil) }
                    state.waiter = continuation
                    return .none
                }
                if let ready { continuation.resume(returning: ready) }
            }
        } onCancel: {
            let waiter = state.withLock { state in
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume(returning: nil)
        }
    }
}
