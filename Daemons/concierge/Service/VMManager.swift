import Foundation
import Processes

#if canImport(Glibc)
    import Glibc
#endif

/// The VMs concierge runs: starting them (allocate, TAP, vmm, VmReady, configure), stopping
/// them (politely first), noticing the ones that die, and keeping the state on disk current so
/// that a restarted concierge re-adopts what still runs and frees what does not.
///
/// An actor: every change to the VM table and the persisted state happens one at a time.
public actor VMManager {
    let config: ConciergeConfiguration
    let log: @Sendable (String) -> Void
    let events: @Sendable (VMEvent) -> Void
    /// Where each VM's 9P server comes from (nil: VMs get no shared folder).
    let shareServers: (any ShareServers)?
    /// Where each VM's host-side mojo-proxy comes from (nil: VMs with mojo channels cannot start).
    let mojoProxies: (any MojoProxies)?
    let stateFile: StateFile<ConciergeState>
    var state: ConciergeState

    /// A VM whose vmm runs (or ran until a moment ago).
    struct Running {
        var info: VMInfo
        let process: ChildProcess
        /// Set by StopVm: the reason VmStopped will give.
        var stopReason: StopReason?
    }

    var running: [String: Running] = [:]
    /// Names with a StartVm under way, so that a second one fails at once.
    var starting: Set<String> = []
    /// The canonical disk paths of the VMs being started, for ``vmUsing(disk:)``.
    var startingDisks: [String: (all: Set<String>, writable: Set<String>)] = [:]
    /// The vmm of each VM being started, once spawned, for ``abortStarts()``.
    var startingProcesses: [String: ChildProcess] = [:]

    /// Loads the persisted state and re-adopts the VMs whose vmm still runs; frees the rest.
    public init(
        config: ConciergeConfiguration, log: @escaping @Sendable (String) -> Void,
        events: @escaping @Sendable (VMEvent) -> Void, shareServers: (any ShareServers)? = nil,
        mojoProxies: (any MojoProxies)? = nil
    ) throws(ConciergeError) {
        self.config = config
        self.shareServers = shareServers
        self.mojoProxies = mojoProxies
        self.log = log
        self.events = events
        stateFile = StateFile(path: config.stateFile)
        do {
            try FileManager.default.createDirectory(atPath: config.stateDirectory, withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: config.runtimeDirectory, withIntermediateDirectories: true)
        } catch {
            throw .failed("creating \(config.stateDirectory) and \(config.runtimeDirectory): \(error)")
        }
        do { state = try stateFile.load() ?? ConciergeState() } catch { throw .failed("\(error)") }
    }

    /// Takes over the VMs a previous concierge left running; call once, before serving.
    /// Returns the names re-adopted.
    public func resume() -> [String] {
        var adopted: [String] = []
        for record in state.vms.values.sorted(by: { $0.name < $1.name }) {
            if Self.startTicks(of: record.pid) == record.startTicks,
                let process = try? ChildProcess.adopt(pid: record.pid)
            {
                running[record.name] = Running(info: info(for: record, state: "running"), process: process)
                watch(record.name, process)
                adopted.append(record.name)
                log("re-adopted VM \(record.name) (vmm pid \(record.pid), CID \(record.resources.cid))")
            } else {
                log("VM \(record.name) (vmm pid \(record.pid)) is gone; freeing its CID, subnet and MAC")
                if record.mojoChannels?.isEmpty == false { stopMojoProxy(record.name) }
                state.vms[record.name] = nil
                state.pools.release(record.name)
                removeRuntimeFolder(record.name)
            }
        }
        // vmm processes of starts that concierge did not live to finish: unconfigured, unrecorded
        // as VMs; ended, so that nothing runs that no one manages.
        for (name, vmm) in (state.startingVMMs ?? [:]).sorted(by: { $0.key < $1.key }) {
            if Self.startTicks(of: vmm.pid) == vmm.startTicks, kill(vmm.pid, SIGKILL) == 0 {
                log("VM \(name) was still starting when concierge stopped: killed its vmm (pid \(vmm.pid))")
            }
        }
        state.startingVMMs = nil
        // Allocations without a VM: a start that concierge did not live to finish.
        for name in state.pools.held.keys where state.vms[name] == nil {
            state.pools.release(name)
            removeRuntimeFolder(name)
        }
        persistLogging()
        return adopted
    }

    // MARK: - Queries

    public func list() -> [VMInfo] { running.values.map(\.info).sorted { $0.name < $1.name } }

    public func info(_ name: String) throws(ConciergeError) -> VMInfo {
        guard let vm = running[name] else { throw .init(.notFound, "no VM named \(name)") }
        return vm.info
    }

    // MARK: - Helpers

    func paths(_ name: String) -> VMPaths { VMPaths(folder: config.runtimeDirectory(of: name)) }

    func info(for record: VMRecord, state: String) -> VMInfo {
        let subnet = config.pools.subnet(record.resources.subnetIndex)
        let paths = paths(record.name)
        return VMInfo(
            name: record.name, state: state, cid: record.resources.cid, pid: record.pid, ipv4: "\(subnet.guest)",
            hostIPv4: "\(subnet.host)", netmask: "\(subnet.netmask)", mac: record.resources.mac, tap: record.tap,
            cpus: record.cpus, memoryMiB: record.memoryMiB, kernel: record.kernel, vsockSocket: paths.vsock,
            maitredSocket: paths.maitred, shellSocket: paths.shell, controlSocket: paths.control,
            serialLog: paths.serialLog, startedAt: record.startedAt, shareServer: record.shareServer ?? 0,
            sharedFolder: record.shareServer == nil ? "" : VMPaths.sharedFolder, mojoChannels: record.mojoChannels ?? []
        )
    }

    func persist() throws(ConciergeError) {
        do { try stateFile.save(state) } catch { throw .failed("saving concierge's state: \(error)") }
    }

    /// Persists where a failure cannot be handed to a caller (cleanup): logged instead.
    func persistLogging() {
        do { try persist() } catch { log("error: \(error)") }
    }

    func removeRuntimeFolder(_ name: String) {
        try? FileManager.default.removeItem(atPath: config.runtimeDirectory(of: name))
    }

    /// Watches `process` and cleans up after it when it ends, however it ends.
    func watch(_ name: String, _ process: ChildProcess) {
        Task { [weak self] in
            let termination = await process.terminated()
            await self?.finish(name, process: process, termination)
        }
    }

    /// The VM's vmm has ended: free everything it held, forget it, and say so. Runs once per
    /// VM (the watcher and StopVm may both get here).
    func finish(_ name: String, process: ChildProcess, _ termination: ChildProcess.Termination) {
        guard let vm = running[name], vm.process === process else { return }
        running[name] = nil
        if let handle = state.vms[name]?.shareServer { stopShareServer(handle) }
        if state.vms[name]?.mojoChannels?.isEmpty == false { stopMojoProxy(name) }
        state.vms[name] = nil
        state.pools.release(name)
        persistLogging()
        removeRuntimeFolder(name)
        let reason =
            vm.stopReason ?? (termination == .exited(0) || termination == .ended ? StopReason.exited : .crashed)
        log("VM \(name) stopped (\(reason.rawValue)): vmm \(termination)")
        events(.stopped(name: name, reason: reason))
    }

    /// /proc/PID/stat's start time (field 22), or nil when there is no such process.
    public static func startTicks(of pid: Int32) -> UInt64? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        // Fields after the command name start at field 3; the start time is field 22.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.count > 19 ? UInt64(fields[19]) : nil
    }
}
