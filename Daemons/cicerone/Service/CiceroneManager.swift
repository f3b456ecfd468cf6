import GRPCCore
import GuestClient
import GuestProtocol

/// The containers of every VM: their definitions (persisted), the running ones with their
/// tokens and garcon ports, and one ContainerListener per VM that cicerone knows is running.
///
/// An actor: each change to what runs happens whole. Calls to guests are awaited inside it,
/// so while one waits, others (garcon's ContainerReady above all) go ahead: after every wait,
/// what was read before it is checked again (a start is known by its token).
public actor CiceroneManager {
    public struct Configuration: Sendable {
        public var stateFile = "/var/lib/cicerone/containers.json"
        /// The running containers with their tokens (0600), for the next cicerone after a
        /// restart: under /run, so it goes with the host's reboot, as the VMs do.
        public var runningFile = "/run/cicerone/running.json"
        /// How long StartContainer waits for garcon's ContainerReady.
        public var readyTimeout: Duration = .seconds(30)
        /// garcon's vsock port in a VM's first container; the next ones take the next free port.
        public var firstGarconPort: UInt32 = 8890
        public init() {}
    }

    /// A container that runs, or is starting.
    struct Running: Codable {
        var token: String
        /// Its first process in the guest (0 until maitred answered).
        var pid: UInt32 = 0
        /// garcon's vsock port, given at the start (ContainerReady must report the same).
        var garconPort: UInt32
        /// Set by garcon's ContainerReady.
        var ready = false
        /// Set by StopContainer: the reason ContainerStopped gives.
        var stopRequested = false
        var startedAt = ContinuousClock.now

        init(token: String, garconPort: UInt32) {
            self.token = token
            self.garconPort = garconPort
        }

        enum CodingKeys: String, CodingKey { case token, pid, garconPort, ready }
    }

    struct KnownVM {
        var vm: GuestVM
        var listener: ContainerListener
    }

    let configuration: Configuration
    let directory: (any VMDirectory)?
    let events: @Sendable (ContainerEvent) -> Void
    let log: @Sendable (String) -> Void
    var state: CiceroneState
    var vms: [String: KnownVM] = [:]
    var running: [ContainerKey: Running] = [:] {
        didSet { persistRunning() }
    }

    public init(
        configuration: Configuration = Configuration(), directory: (any VMDirectory)?,
        events: @escaping @Sendable (ContainerEvent) -> Void, log: @escaping @Sendable (String) -> Void
    ) throws(CiceroneError) {
        self.configuration = configuration
        self.directory = directory
        self.events = events
        self.log = log
        state = try CiceroneState.load(from: configuration.stateFile)
    }

    // MARK: - VMs

    /// concierge's NotifyVmStarted: listen for the VM's garcons. The same VM told again (by a
    /// restarted concierge) is no change; a VM of that name with another CID is a new VM.
    public func vmStarted(_ vm: GuestVM) async throws(CiceroneError) {
        if let known = vms[vm.name] {
            if known.vm == vm { return }
            vmStopped(vm.name, reason: "vm-restarted")
        }
        let listener = ContainerListener(vm: vm.name, path: vm.listenerSocket, manager: self, log: log)
        // Known before the wait, so that a second notice of the VM meanwhile (concierge's,
        // and a client's request that made cicerone ask concierge) finds it and opens no other.
        vms[vm.name] = KnownVM(vm: vm, listener: listener)
        do { try await listener.ready() } catch {
            if vms[vm.name]?.listener === listener { vms[vm.name] = nil }
            listener.stop()
            throw .failed("VM \(vm.name): listening at \(vm.listenerSocket): \(error)")
        }
        log("VM \(vm.name) (CID \(vm.cid)): listening for its containers at \(vm.listenerSocket)")
    }

    /// concierge's NotifyVmStopped: its containers are gone, and so is its listener.
    public func vmStopped(_ name: String, reason: String = "vm-stopped") {
        guard let known = vms.removeValue(forKey: name) else { return }
        known.listener.stop()
        let ended = running.keys.filter { $0.vm == name }.sorted { $0.name < $1.name }
        running = running.filter { $0.key.vm != name }  // one write of running.json, not one per container
        for key in ended { events(.stopped(key, reason: reason)) }
        log("VM \(name) stopped: its containers with it")
    }

    /// Closes every listener (cicerone is ending). The containers go on running in their VMs,
    /// and stay recorded with their tokens: the next cicerone takes them over (``resume()``).
    public func stopAll() {
        for known in vms.values { known.listener.stop() }
        vms = [:]
    }

    /// The running VM `name`: one concierge told of, or one it says runs.
    func vm(_ name: String) async throws(CiceroneError) -> GuestVM {
        if let known = vms[name] { return known.vm }
        let found: GuestVM?
        do { found = try await directory?.vm(named: name) } catch {
            throw .failed("no VM named \(name) is known to cicerone, and concierge could not say: \(error)")
        }
        if let vm = found {
            if vms[name] == nil { try await vmStarted(vm) }
            return vm
        }
        throw .init(.notFound, "no VM named \(name) is running")
    }

    // MARK: - Containers

    /// CreateContainer: records a container of `vm` whose root is `image` in the guest beneath
    /// an overlay keeping its changes in `changesDirectory`.
    public func create(_ definition: ContainerDefinition) async throws(CiceroneError) {
        guard ContainerName.isValid(definition.name) else {
            throw .invalid(
                "container name '\(definition.name)': use 1 to 63 of a-z, 0-9 and '-', not starting with '-'")
        }
        guard ContainerName.isValid(definition.hostname) else {
            throw .invalid("hostname '\(definition.hostname)': use 1 to 63 of a-z, 0-9 and '-'")
        }
        for (what, path) in [("image", definition.image), ("changes_dir", definition.changesDirectory)] {
            guard path.hasPrefix("/"), !path.contains(where: { ",:\\".contains($0) }),
                !path.split(separator: "/").contains("..")
            else {
                throw .invalid("\(what) '\(path)' must be an absolute path in the guest without '..', ',', ':' or '\\'")
            }
        }
        guard definition.changesDirectory != "/" else { throw .invalid("changes_dir cannot be /") }
        _ = try await vm(definition.vm)
        let key = ContainerKey(vm: definition.vm, name: definition.name)
        guard self.definition(key) == nil else { throw .init(.alreadyExists, "\(key) exists") }
        // Two overlays sharing an upper folder corrupt each other's files.
        func within(_ a: String, _ b: String) -> Bool { a == b || a.hasPrefix(b.hasSuffix("/") ? b : b + "/") }
        if let other = state.containers.first(where: {
            $0.vm == definition.vm
                && (within($0.changesDirectory, definition.changesDirectory)
                    || within(definition.changesDirectory, $0.changesDirectory))
        }) {
            throw .invalid(
                "changes_dir \(definition.changesDirectory) overlaps container \(other.name)'s (\(other.changesDirectory))"
            )
        }
        var next = state
        next.containers.append(definition)
        try next.save(to: configuration.stateFile)
        state = next
        log("created \(key): image \(definition.image), changes in \(definition.changesDirectory)")
    }

    /// DestroyContainer: forgets a stopped container (its changes stay in the guest).
    public func destroy(_ key: ContainerKey) throws(CiceroneError) {
        guard definition(key) != nil else { throw .init(.notFound, "no \(key)") }
        guard running[key] == nil else { throw .init(.busy, "\(key) is running; stop it first") }
        var next = state
        next.containers.removeAll { $0.vm == key.vm && $0.name == key.name }
        try next.save(to: configuration.stateFile)
        state = next
    }

    func definition(_ key: ContainerKey) -> ContainerDefinition? {
        state.containers.first { $0.vm == key.vm && $0.name == key.name }
    }

    /// A container's description for ListContainers.
    public struct Listing: Sendable, Equatable {
        public var definition: ContainerDefinition
        /// "stopped", "starting" or "running".
        public var state: String
        public var pid: UInt32
        public var garconPort: UInt32
    }

    /// The containers of `vm` (which need not run), sorted by name; first, what maitred runs
    /// is checked, so a container whose garcon died without a word is listed stopped.
    public func list(vm: String) async -> [Listing] {
        await reconcile(vm: vm)
        return state.containers.filter { $0.vm == vm }.sorted { $0.name < $1.name }.map { definition in
            let key = ContainerKey(vm: vm, name: definition.name)
            guard let container = running[key] else {
                return Listing(definition: definition, state: "stopped", pid: 0, garconPort: 0)
            }
            return Listing(
                definition: definition, state: container.ready ? "running" : "starting", pid: container.pid,
                garconPort: container.ready ? container.garconPort : 0)
        }
    }

    /// GetContainerToken: the running container's current token.
    public func token(_ key: ContainerKey) throws(CiceroneError) -> String {
        guard let container = running[key] else { throw .init(.notFound, "\(key) is not running") }
        return container.token
    }
}
