import GRPCCore
import GRPCNIOTransportHTTP2Posix
import GuestProtocol
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// cicerone's ContainerListener for one VM, served on that VM's `<vsock socket>_8889`: vmm
/// sends only that VM's guest connections there, so the socket a call arrives on is the VM
/// (CID) it came from. Every call's token must name a container of that VM.
final class ContainerListener: Sendable {
    let vm: String
    let path: String
    private let server: GRPCServer<HTTP2ServerTransport.Posix>
    private let serving: Task<Void, Never>
    /// The socket file it bound (its inode), so that stopping removes only that.
    private let boundInode = Mutex<ino_t?>(nil)

    /// Listens at `path` (a stale socket there is replaced) and serves until ``stop()``.
    init(vm: String, path: String, manager: CiceroneManager, log: @escaping @Sendable (String) -> Void) {
        self.vm = vm
        self.path = path
        unlink(path)
        let server = GRPCServer(
            transport: .http2NIOPosix(address: .unixDomainSocket(path: path), transportSecurity: .plaintext),
            services: [ListenerService(vm: vm, manager: manager)])
        self.server = server
        serving = Task {
            do { try await server.serve() } catch {
                log("VM \(vm): the container listener at \(path) failed: \(error)")
            }
        }
    }

    /// Waits until the socket accepts connections (or the server failed).
    func ready() async throws {
        _ = try await server.listeningAddress
        var info = stat()
        if stat(path, &info) == 0 { boundInode.withLock { $0 = info.st_ino } }
    }

    /// Stops serving: gracefully, so that no call in flight is cut (NIO traps on a server
    /// cancelled with open connections), and for good after 10 s.
    func stop() {
        server.beginGracefulShutdown()
        let serving = self.serving
        Task {
            try? await Task.sleep(for: .seconds(10))
            serving.cancel()
        }
        // Only its own socket: another listener may have bound the path since.
        var info = stat()
        if let inode = boundInode.withLock({ $0 }), stat(path, &info) == 0, info.st_ino == inode { unlink(path) }
    }
}

/// The calls garcon makes, each checked against the VM it arrived from.
private struct ListenerService: Vmtools_Container_ContainerListener.SimpleServiceProtocol {
    let vm: String
    let manager: CiceroneManager

    func containerReady(
        request: Vmtools_Container_ContainerReadyRequest, context: ServerContext
    ) async throws -> Vmtools_Container_Empty {
        guard (1...65535).contains(request.garconPort) else {
            throw RPCError(code: .invalidArgument, message: "garcon_port \(request.garconPort) is not a port")
        }
        try await manager.containerReady(vm: vm, token: request.token, garconPort: request.garconPort)
        return Vmtools_Container_Empty()
    }

    func containerShutdown(
        request: Vmtools_Container_ContainerShutdownRequest, context: ServerContext
    ) async throws -> Vmtools_Container_Empty {
        try await manager.containerShutdown(vm: vm, token: request.token)
        return Vmtools_Container_Empty()
    }

    func updateApplicationList(
        request: Vmtools_Container_UpdateApplicationListRequest, context: ServerContext
    ) async throws -> Vmtools_Container_Empty {
        try await manager.applicationsChanged(vm: vm, token: request.token, count: request.applications.count)
        return Vmtools_Container_Empty()
    }

    func openUrl(request: Vmtools_Container_OpenUrlRequest, context: ServerContext) async throws
        -> Vmtools_Container_Empty
    {
        try await manager.openURL(vm: vm, token: request.token, url: request.url)
        return Vmtools_Container_Empty()
    }
}
