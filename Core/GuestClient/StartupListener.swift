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
        let outcome = FirstOutcome<Vmtools_Guest_VmReadyRequest>()
        // The server is never cancelled while it may hold accepted connections: that traps in NIO
        // ("Deinited NIOAsyncWriter without calling finish()", seen with several guests calling at
        // once). It ends by graceful shutdown, in the background, so that a guest slow to hang up
        // does not hold the caller; one that never does is cut off after 10 s.
        let serving = Task {
            do {
                try await server.serve()
                outcome.resolve(
                    .failure(GuestClientError.invalid("the startup listener on \(path) stopped before VmReady")))
            } catch {
                outcome.resolve(.failure(error))
            }
        }
        let waiting = Task { if let request = await service.firstCall() { outcome.resolve(.success(request)) } }
        let timer = Task {
            try await Task.sleep(for: timeout)
            outcome.resolve(.failure(GuestClientError.timedOut("no VmReady on \(path) within \(timeout)")))
        }
        defer {
            timer.cancel()
            waiting.cancel()
            server.beginGracefulShutdown()
            Task {
                try? await Task.sleep(for: .seconds(10))
                serving.cancel()
            }
        }
        return try await outcome.value()
    }
}

/// The first of several outcomes, awaited once; cancelling the waiter is an outcome too.
private final class FirstOutcome<Value: Sendable>: Sendable {
    private struct State {
        var result: Result<Value, any Error>?
        var waiter: CheckedContinuation<Value, any Error>?
    }

    private let state = Mutex(State())

    /// Records `result` unless one came first, and wakes the waiter.
    func resolve(_ result: Result<Value, any Error>) {
        let waiter = state.withLock { state -> CheckedContinuation<Value, any Error>? in
            guard state.result == nil else { return nil }
            state.result = result
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(with: result)
    }

    /// The first outcome; CancellationError if the waiting task is cancelled first.
    func value() async throws -> Value {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let ready = state.withLock { state -> Result<Value, any Error>? in
                    if let result = state.result { return result }
                    state.waiter = continuation
                    return nil
                }
                if let ready { continuation.resume(with: ready) }
            }
        } onCancel: {
            resolve(.failure(CancellationError()))
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
