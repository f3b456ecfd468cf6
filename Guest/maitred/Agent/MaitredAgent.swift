import GRPCCore
import GRPCNIOTransportHTTP2Posix
import GuestProtocol
import GuestTransport
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// maitred: the Maitred service and the shell, each on its own port, and the VmReady call once
/// both listen.
public struct MaitredAgent: Sendable {
    public struct Options: Sendable {
        public var listen = AgentAddress.vsock(cid: AgentAddress.anyCID, port: 8888)
        public var shellListen = AgentAddress.vsock(cid: AgentAddress.anyCID, port: 9001)
        /// The host's startup listener; nil: tell nobody.
        public var ready: AgentAddress? = .vsock(cid: 2, port: 7777)
        public init() {}
    }

    let options: Options
    let reaper: ProcessReaper
    let asInit: Bool

    public init(options: Options, reaper: ProcessReaper, asInit: Bool) {
        self.options = options
        self.reaper = reaper
        self.asInit = asInit
    }

    /// Serves until Shutdown (as PID 1 that powers off and never returns).
    public func run(startedAt: ContinuousClock.Instant) async throws {
        let servers = ServerPair()
        let shutdown: MaitredService.ShutdownAction = asInit ? .powerOff : .call({ servers.stop() })
        let maitred = GRPCServer(
            transport: .http2NIOPosix(address: options.listen.listenAddress, transportSecurity: .plaintext),
            services: [MaitredService(reaper: reaper, shutdownAction: shutdown)])
        let shell = GRPCServer(
            transport: .http2NIOPosix(address: options.shellListen.listenAddress, transportSecurity: .plaintext),
            services: [ShellService(reaper: reaper)])
        servers.set(maitred, shell)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await Self.serve(maitred, named: "Maitred", on: options.listen) }
            group.addTask { try await Self.serve(shell, named: "Shell", on: options.shellListen) }
            group.addTask {
                // VmReady only once both listen.
                _ = try await maitred.transport.listeningAddress
                _ = try await shell.transport.listeningAddress
                KernelLog.info("serving on \(options.listen) (maitred) and \(options.shellListen) (shell)")
                if let ready = options.ready {
                    let millis = (ContinuousClock.now - startedAt).components
                    let elapsed = UInt32(clamping: millis.seconds * 1000 + millis.attoseconds / 1_000_000_000_000_000)
                    await StartupNotifier.notify(ready, startupMillis: elapsed)
                }
            }
            try await group.waitForAll()
        }
    }
}

extension MaitredAgent {
    /// Serves until the server ends, and says when and how it did (a listener that goes away
    /// must show on the console, not only as refused connections on the host).
    static func serve(
        _ server: GRPCServer<HTTP2ServerTransport.Posix>, named name: String, on address: AgentAddress
    ) async throws {
        do {
            try await server.serve()
            KernelLog.info("the \(name) server on \(address) stopped")
        } catch let error where Task.isCancelled {
            // Asked to stop (the agent is ending): the transport reports that as an error.
            KernelLog.info("the \(name) server on \(address) stopped")
            throw error
        } catch {
            KernelLog.error("the \(name) server on \(address) failed: \(error)")
            throw error
        }
    }
}

/// The two servers, so that Shutdown (outside PID 1) can stop both.
final class ServerPair: Sendable {
    private let servers = Mutex<[GRPCServer<HTTP2ServerTransport.Posix>]>([])

    func set(_ first: GRPCServer<HTTP2ServerTransport.Posix>, _ second: GRPCServer<HTTP2ServerTransport.Posix>) {
        servers.withLock { $0 = [first, second] }
    }

    func stop() {
        for server in servers.withLock({ $0 }) { server.beginGracefulShutdown() }
    }
}
