import DesktopEntries
import EventLoop
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import GuestProtocol
import GuestTransport
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// garcon: serves Garcon in a container, tells the host it is ready (ContainerReady, with the
/// token maitred left at /dev/.container_token), keeps the host's application list current, and
/// says goodbye (ContainerShutdown) on SIGTERM.
public struct GarconAgent: Sendable {
    public struct Options: Sendable {
        public var listen = AgentAddress.vsock(cid: AgentAddress.anyCID, port: 8890)
        /// cicerone's ContainerListener; nil: tell nobody (tests).
        public var host: AgentAddress? = .vsock(cid: 2, port: 8889)
        public var tokenPath = "/dev/.container_token"
        public var dataDirectories = ApplicationIndex.dataDirectories(environment: [:])
        /// Say ContainerShutdown and stop on SIGTERM (``blockTerminationSignal()`` must have run).
        public var stopsOnSIGTERM = true
        public init() {}
    }

    let options: Options
    let environment: [String: String]

    public init(options: Options, environment: [String: String]) {
        self.options = options
        self.environment = environment
    }

    /// Reads the container's token: what the host gave this container, trimmed.
    public static func readToken(at path: String) throws -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw GarconError("the container token \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 512)
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        let token = String(decoding: buffer.prefix(max(n, 0)), as: UTF8.self).trimmingCharacters(in: "\n")
        guard !token.isEmpty else { throw GarconError("the container token \(path) is empty") }
        return token
    }

    /// Serves until SIGTERM (or the server fails).
    public func run() async throws {
        let token = try Self.readToken(at: options.tokenPath)
        let index = ApplicationIndex(dataDirectories: options.dataDirectories)
        let service = GarconService(
            applications: index, icons: IconLookup(dataDirectories: options.dataDirectories),
            launcher: ApplicationLauncher(environment: environment))
        let server = GRPCServer(
            transport: .http2NIOPosix(address: options.listen.listenAddress, transportSecurity: .plaintext),
            services: [service])
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.serve() }
            let address = try await server.transport.listeningAddress
            let port = address.virtualSocket?.port.rawValue ?? 0
            GarconLog.info("serving on \(options.listen) (port \(port))")
            let host = options.host.map { HostCalls(address: $0, token: token) }
            if let host {
                // Watching starts before ContainerReady, so that no change is missed: the first
                // list goes out after it, the changes after that.
                let updates = ApplicationUpdates(host: host, index: index)
                try ApplicationWatcher(dataDirectories: options.dataDirectories).start { updates.changed() }
                try await host.ready(port: port)
                updates.hostIsReady()
            }
            if options.stopsOnSIGTERM {
                try Self.onTermination {
                    Task {
                        await host?.shutdown()
                        server.beginGracefulShutdown()
                    }
                }
            }
            try await withTaskCancellationHandler {
                try await group.waitForAll()
            } onCancel: {
                server.beginGracefulShutdown()
            }
        }
    }
}

/// Sends the host the application list when it changed, once the host knows the container.
final class ApplicationUpdates: Sendable {
    private struct State {
        var hostIsReady = false
        var last: Vmtools_Container_ApplicationList?
    }

    let index: ApplicationIndex
    private let state = Mutex(State())
    /// Lists go out one at a time, in order, so the host never ends up with an older one.
    private let outbox: AsyncStream<Vmtools_Container_ApplicationList>.Continuation

    init(host: HostCalls, index: ApplicationIndex) {
        self.index = index
        let (lists, outbox) = AsyncStream.makeStream(of: Vmtools_Container_ApplicationList.self)
        self.outbox = outbox
        Task {
            for await list in lists { await host.update(list) }
        }
    }

    /// The watcher saw a change (before the host is ready, the first list covers it).
    func changed() {
        if state.withLock({ $0.hostIsReady }) { send() }
    }

    /// ContainerReady went out: the host gets the whole list now (as ChromeOS's garcon sends it
    /// on start), and each change from here on.
    func hostIsReady() {
        state.withLock { $0.hostIsReady = true }
        send(force: true)
    }

    private func send(force: Bool = false) {
        let list = GarconService.list(index.scan())
        let isNew = state.withLock { state in
            defer { state.last = list }
            return force || state.last != list
        }
        if isNew { outbox.yield(list) }
    }
}

extension GarconAgent {
    /// Blocks SIGTERM in this thread and every thread started after it: call it first thing in
    /// `main`. A PID namespace's first process gets only the signals it handles, and a blocked
    /// signal is never dropped: ``run()`` takes it with sigwait.
    public static func blockTerminationSignal() {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGTERM)
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }

    /// Calls `handler` once SIGTERM arrives (it must be blocked: ``blockTerminationSignal()``).
    static func onTermination(_ handler: @escaping @Sendable () -> Void) throws {
        try HostThread.detached(name: "sigterm") {
            var set = sigset_t()
            sigemptyset(&set)
            sigaddset(&set, SIGTERM)
            var signal: Int32 = 0
            while sigwait(&set, &signal) != 0 {}
            GarconLog.info("SIGTERM: saying goodbye to the host and stopping")
            handler()
        }
    }
}

/// garcon's calls to the host's ContainerListener, each with the container's token.
struct HostCalls: Sendable {
    let address: AgentAddress
    let token: String

    /// A host that does not answer must not hold garcon up (on SIGTERM, say).
    static var callOptions: CallOptions {
        var options = CallOptions.defaults
        options.timeout = .seconds(10)
        return options
    }

    /// ContainerReady, retried for up to a minute: the host may start listening a moment later.
    func ready(port: UInt32) async throws {
        var request = Vmtools_Container_ContainerReadyRequest()
        request.token = token
        request.garconPort = port
        let ready = request
        for attempt in 1...60 {
            do {
                try await call { try await $0.containerReady(ready, options: Self.callOptions) }
                GarconLog.info("told the host (\(address)) the container is ready")
                return
            } catch {
                // A host that refused the token will not change its mind; one not listening yet may.
                let refused = (error as? RPCError)?.code == .permissionDenied
                if refused || attempt == 60 { throw GarconError("ContainerReady to \(address): \(error)") }
                try await Task.sleep(for: .seconds(1))
            }
        }
    }

    func update(_ list: Vmtools_Container_ApplicationList) async {
        var request = Vmtools_Container_UpdateApplicationListRequest()
        request.token = token
        request.applications = list.applications
        let update = request
        do { try await call { try await $0.updateApplicationList(update, options: Self.callOptions) } } catch {
            GarconLog.info("UpdateApplicationList to \(address): \(error)")
        }
    }

    func shutdown() async {
        var request = Vmtools_Container_ContainerShutdownRequest()
        request.token = token
        let shutdown = request
        try? await call { try await $0.containerShutdown(shutdown, options: Self.callOptions) }
    }

    func openURL(_ url: String) async throws {
        var request = Vmtools_Container_OpenUrlRequest()
        request.token = token
        request.url = url
        let open = request
        try await call { try await $0.openUrl(open, options: Self.callOptions) }
    }

    private func call(
        _ body:
            @Sendable (Vmtools_Container_ContainerListener.Client<HTTP2ClientTransport.Posix>) async throws ->
            Vmtools_Container_Empty
    ) async throws {
        try await withGRPCClient(transport: try address.clientTransport()) { client in
            _ = try await body(Vmtools_Container_ContainerListener.Client(wrapping: client))
        }
    }
}

extension GarconAgent {
    /// `garcon open-url URL`: asks the host to open a URL, with this container's token.
    public static func openURL(_ url: String, host: AgentAddress, tokenPath: String) async throws {
        try await HostCalls(address: host, token: try readToken(at: tokenPath)).openURL(url)
    }
}

public struct GarconError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// garcon's messages: standard output and error are the VM's console (maitred gives the
/// container its console), one line each, unbuffered.
public enum GarconLog {
    public static func info(_ message: String) { write(1, "garcon: \(message)\n") }
    public static func error(_ message: String) { write(2, "garcon: \(message)\n") }

    private static func write(_ fd: Int32, _ line: String) {
        var line = line
        line.withUTF8 { _ = Glibc.write(fd, $0.baseAddress, $0.count) }
    }
}
