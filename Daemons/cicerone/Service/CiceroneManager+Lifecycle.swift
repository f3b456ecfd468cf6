import GRPCCore
import GRPCNIOTransportHTTP2Posix
import GuestClient
import GuestProtocol

// MARK: - Starting and stopping containers

extension CiceroneManager {
    /// StartContainer: a fresh token, maitred's StartContainer (the image beneath an overlay
    /// of the container's changes, garcon as its first process on a port of its own), then
    /// garcon's ContainerReady. Returns the container's first process's PID in the guest.
    public func start(_ key: ContainerKey) async throws(CiceroneError) -> UInt32 {
        guard definition(key) != nil else { throw .init(.notFound, "no \(key): CreateContainer makes one") }
        let vm = try await vm(key.vm)
        if running[key] != nil { await reconcile(vm: key.vm) }
        // Read again after the waits: a DestroyContainer may have come meanwhile.
        guard let definition = definition(key) else { throw .init(.notFound, "no \(key): CreateContainer makes one") }
        guard running[key] == nil else { throw .init(.alreadyExists, "\(key) is already running") }
        let token = ContainerToken.make()
        let port = freeGarconPort(vm: key.vm)
        // Known before maitred starts it: garcon may call before maitred has answered.
        running[key] = Running(token: token, garconPort: port)
        var request = Vmtools_Guest_StartContainerRequest()
        request.name = key.name
        request.rootfs = definition.image
        request.changesDir = definition.changesDirectory
        request.hostname = definition.hostname
        request.token = token
        request.garconArguments = ["--listen", "vsock:\(port)"]
        let pid: UInt32
        do throws(CiceroneError) {
            pid = try await Self.maitred(vm, "starting \(key)") {
                try await $0.startContainer(request, options: Self.deadline(.seconds(30))).pid
            }
        } catch {
            if running[key]?.token == token { running[key] = nil }
            guard error.kind == .alreadyExists else { throw error }
            throw .init(
                .alreadyExists,
                "\(key) runs in the guest, though cicerone lost track of it: stop it first (vmtoolsctl container stop \(key.vm) \(key.name))"
            )
        }
        if running[key]?.token == token { running[key]?.pid = pid }
        log("\(key): started (pid \(pid) in the guest), waiting for garcon on port \(port)")

        let deadline = ContinuousClock.now + configuration.readyTimeout
        while ContinuousClock.now < deadline {
            guard let container = running[key], container.token == token else {
                throw .failed("\(key) ended before garcon was ready (the VM's serial.log has its output)")
            }
            if container.ready { return pid }
            try? await Task.sleep(for: .milliseconds(5))
        }
        if running[key]?.token == token { running[key] = nil }
        var stop = Vmtools_Guest_StopContainerRequest()
        stop.name = key.name
        stop.graceSeconds = 2
        _ = try? await Self.maitred(vm, "stopping \(key)") {
            _ = try await $0.stopContainer(stop, options: Self.deadline(.seconds(20)))
        }
        throw .init(
            .timedOut,
            "garcon in \(key) did not report ready within \(configuration.readyTimeout) (the VM's serial.log has its output); the container was stopped"
        )
    }

    /// StopContainer: maitred stops it (SIGTERM: garcon says ContainerShutdown; SIGKILL after
    /// the grace period). maitred is asked even when cicerone has no record of it running, so
    /// one a cicerone lost track of stops too; NotFound only when neither knew it.
    public func stop(_ key: ContainerKey, graceSeconds: UInt32 = 10) async throws(CiceroneError) {
        guard definition(key) != nil else { throw .init(.notFound, "no \(key)") }
        let vm = try await vm(key.vm)
        let token = running[key]?.token
        if token != nil { running[key]?.stopRequested = true }
        var request = Vmtools_Guest_StopContainerRequest()
        request.name = key.name
        request.graceSeconds = graceSeconds
        do throws(CiceroneError) {
            try await Self.maitred(vm, "stopping \(key)") {
                _ = try await $0.stopContainer(request, options: Self.deadline(.seconds(Int(graceSeconds) + 20)))
            }
        } catch  where error.kind == .notFound {
            // It had ended already, or never ran.
            if token == nil { throw .init(.notFound, "\(key) is not running") }
        }
        // Only the start this stop was about: a new one may have begun meanwhile.
        if let token, running[key]?.token == token {
            running[key] = nil
            events(.stopped(key, reason: "requested"))
        }
        log("\(key): stopped")
    }

    /// Forgets the ready containers of `vm` that maitred no longer runs (garcon ended without
    /// ContainerShutdown: killed, or crashed), saying ContainerStopped ("ended") for each. A
    /// maitred that cannot be asked changes nothing.
    func reconcile(vm name: String) async {
        // What was ready, with a known first process, before the wait; and afterwards only if
        // it is still that start (a new one may have come meanwhile).
        let checked = running.filter { $0.key.vm == name && $0.value.ready && $0.value.pid != 0 }
            .mapValues { (token: $0.token, pid: $0.pid) }
        guard let vm = vms[name]?.vm, !checked.isEmpty else { return }
        guard
            let inGuest = try? await Self.maitred(
                vm, "listing containers",
                { client in
                    try await client.listContainers(Vmtools_Guest_Empty(), options: Self.deadline(.seconds(10)))
                        .containers
                })
        else { return }
        for (key, was) in checked where running[key]?.token == was.token {
            guard !inGuest.contains(where: { $0.name == key.name && $0.pid == was.pid }) else { continue }
            running[key] = nil
            log("\(key) ended without garcon saying so")
            events(.stopped(key, reason: "ended"))
        }
    }

    /// Call options with a deadline: a guest that takes a call and never answers must not hold
    /// cicerone (or its start) for good.
    static func deadline(_ limit: Duration) -> CallOptions {
        var options = CallOptions.defaults
        options.timeout = limit
        return options
    }

    /// The lowest port from ``Configuration/firstGarconPort`` no container of `vm` has.
    func freeGarconPort(vm: String) -> UInt32 {
        let taken = Set(running.filter { $0.key.vm == vm }.map(\.value.garconPort))
        var port = configuration.firstGarconPort
        while taken.contains(port) { port += 1 }
        return port
    }

    /// Runs `body` with a client of `vm`'s maitred; a failure becomes an error naming `what`.
    static func maitred<Result: Sendable>(
        _ vm: GuestVM, _ what: String,
        _ body: (Vmtools_Guest_Maitred.Client<HTTP2ClientTransport.Posix>) async throws -> Result
    ) async throws(CiceroneError) -> Result {
        try await guestCall(.socket(vm.maitredSocket), what, in: "VM \(vm.name)'s maitred") {
            try await body(Vmtools_Guest_Maitred.Client(wrapping: $0))
        }
    }

    /// Runs `body` with a gRPC client of a guest agent at `endpoint`; a failure becomes an
    /// error naming `what` (``guestError(_:_:in:)``).
    static func guestCall<Result: Sendable>(
        _ endpoint: GuestEndpoint, _ what: String, in agent: String,
        _ body: (GRPCClient<HTTP2ClientTransport.Posix>) async throws -> Result
    ) async throws(CiceroneError) -> Result {
        do {
            return try await endpoint.withClient(body)
        } catch {
            throw guestError(error, what, in: agent)
        }
    }

    /// A guest's gRPC error as cicerone's: its code's kind, its message after `what`.
    static func guestError(_ error: any Error, _ what: String, in agent: String) -> CiceroneError {
        guard let rpc = error as? RPCError else { return .failed("\(what): \(agent): \(error)") }
        let kind: CiceroneError.Kind =
            switch rpc.code {
            case .notFound: .notFound
            case .invalidArgument, .failedPrecondition: .invalidArgument
            case .alreadyExists: .alreadyExists
            case .deadlineExceeded: .timedOut
            case .permissionDenied: .accessDenied
            default: .failed
            }
        return .init(kind, "\(what): \(rpc.message)")
    }
}

// MARK: - What garcon tells the host

extension CiceroneManager {
    /// The container of `vm` whose token this is. Anything else is refused and logged: a token
    /// no container has, or one of a container in another VM (a guest must not speak for
    /// another VM's containers). The caller hears the same refusal either way.
    func authenticate(vm: String, token: String, _ call: String) throws(RPCError) -> ContainerKey {
        if let key = running.first(where: { $0.key.vm == vm && ContainerToken.matches($0.value.token, token) })?.key {
            return key
        }
        if let other = running.first(where: { ContainerToken.matches($0.value.token, token) })?.key {
            log("refused \(call) from VM \(vm): it presented the token of \(other)")
        } else {
            log("refused \(call) from VM \(vm): a token no container has")
        }
        throw RPCError(code: .permissionDenied, message: "refused: no container of VM \(vm) has this token")
    }

    func containerReady(vm: String, token: String, garconPort: UInt32) throws(RPCError) {
        let key = try authenticate(vm: vm, token: token, "ContainerReady")
        guard var container = running[key] else { return }
        // The port it was given: another would let one container have the host's calls for it
        // sent to another container's garcon.
        guard garconPort == container.garconPort else {
            log("refused ContainerReady from \(key): port \(garconPort), but it was given \(container.garconPort)")
            throw RPCError(
                code: .invalidArgument,
                message: "garcon_port \(garconPort) is not the port this container was given (\(container.garconPort))")
        }
        let first = !container.ready
        container.ready = true
        running[key] = container
        if first {
            log(
                "\(key): garcon ready on port \(garconPort), \(ContinuousClock.now - container.startedAt) after the start"
            )
            events(.started(key))
        }
    }

    func containerShutdown(vm: String, token: String) throws(RPCError) {
        let key = try authenticate(vm: vm, token: token, "ContainerShutdown")
        guard let container = running.removeValue(forKey: key) else { return }
        events(.stopped(key, reason: container.stopRequested ? "requested" : "container-shutdown"))
    }

    func applicationsChanged(vm: String, token: String, count: Int) throws(RPCError) {
        let key = try authenticate(vm: vm, token: token, "UpdateApplicationList")
        events(.applicationsChanged(key, count: count))
    }

    func openURL(vm: String, token: String, url: String) throws(RPCError) {
        let key = try authenticate(vm: vm, token: token, "OpenUrl")
        guard (1...4096).contains(url.utf8.count), url.utf8.allSatisfy({ $0 >= 0x20 && $0 != 0x7F }) else {
            throw RPCError(
                code: .invalidArgument, message: "the URL must be 1 to 4096 bytes without control characters")
        }
        events(.openURL(key, url: url))
    }
}

// MARK: - For tests

extension CiceroneManager {
    /// Records `key` as StartContainer does once maitred has started it, without a guest: for
    /// tests of the listener's checks, which need a container waiting for its garcon.
    func recordStarting(_ key: ContainerKey, token: String, garconPort: UInt32) {
        running[key] = Running(token: token, garconPort: garconPort)
    }
}
