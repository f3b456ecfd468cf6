import Foundation
import GRPCCore
import GuestClient
import GuestProtocol
import Processes

#if canImport(Glibc)
    import Glibc
#endif

// MARK: - StartVm

extension VMManager {
    /// Starts a VM the way ChromeOS's concierge does: validate; allocate a CID, a /30 and a
    /// MAC (persisted); make the TAP; spawn vmm with the TAP's descriptor; wait for maitred's
    /// VmReady; configure the guest's network and clock. Any failure undoes all of it.
    public func start(_ options: VMOptions) async throws(ConciergeError) -> VMInfo {
        let options = options.resolvingDiskNames(disksDirectory: config.disksDirectory)
        try options.validate()
        let name = options.name
        guard running[name] == nil, !starting.contains(name) else {
            throw .init(.alreadyExists, "VM \(name) already exists")
        }
        try checkDiskSharing(options)
        if !options.mojoChannels.isEmpty && mojoProxies == nil {
            throw .failed("mojo channels need systemd (vmtools-mojo-proxy@.service), which this concierge does not use")
        }
        let boot = try options.bootFiles(imagesDirectory: config.imagesDirectory)
        starting.insert(name)
        defer { starting.remove(name) }
        startingDisks[name] = (
            Set((options.disks + options.writableDisks).map(Self.canonicalPath)),
            Set(options.writableDisks.map(Self.canonicalPath))
        )
        defer { startingDisks[name] = nil }
        defer { startingProcesses[name] = nil }
        events(.starting(name: name))

        let resources: VMResources
        do {
            resources = try state.pools.allocate(for: name, config: config.pools)
        } catch {
            events(.stopped(name: name, reason: .startFailed))
            throw .init(.resourceExhausted, "\(error)")
        }
        var process: ChildProcess?
        do {
            try persist()
            let launched = try await launch(options, boot: boot, resources: resources)
            process = launched.process
            let info = launched.info
            running[name] = Running(info: info, process: launched.process)
            state.vms[name] = launched.record
            state.startingVMMs?[name] = nil
            try persist()
            watch(name, launched.process)
            log("VM \(name) ready: CID \(info.cid), \(info.ipv4), vmm pid \(info.pid)")
            events(.started(info))
            return info
        } catch {
            if let process {
                process.signal(SIGKILL)
                _ = await process.terminated()
            }
            running[name] = nil
            state.vms[name] = nil
            state.startingVMMs?[name] = nil
            state.pools.release(name)
            persistLogging()
            removeRuntimeFolder(name)
            log("VM \(name) did not start: \(error)")
            events(.stopped(name: name, reason: .startFailed))
            throw error
        }
    }

    /// The steps from the runtime folder to a configured guest; the caller undoes them on error.
    private func launch(_ options: VMOptions, boot: (kernel: String, initrd: String), resources: VMResources)
        async throws(ConciergeError) -> (process: ChildProcess, info: VMInfo, record: VMRecord)
    {
        let name = options.name
        let paths = paths(name)
        removeRuntimeFolder(name)
        do {
            try FileManager.default.createDirectory(
                atPath: paths.folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw .failed("creating \(paths.folder): \(error)")
        }
        let subnet = config.pools.subnet(resources.subnetIndex)
        let tapName = "\(config.tapPrefix)\(resources.subnetIndex)"
        let tap: HostTap
        do { tap = try HostTap(name: tapName, subnet: subnet) } catch {
            throw .failed("VM \(name)'s network: \(error)")
        }

        let shareServer = await startShareServer(options, paths: paths)
        var handedOver = false
        defer { if !handedOver, let shareServer { stopShareServer(shareServer) } }

        let timeout = options.timeoutSeconds ?? config.startTimeoutSeconds
        let listener = Task {
            try await StartupListener.waitForReady(
                on: paths.startupListener, timeout: .milliseconds(Int(timeout * 1000)))
        }
        defer { listener.cancel() }
        // vmm sends the guest's VmReady connection to this socket: it must listen first. (It
        // took over 5 s on a loaded 2-core machine: bounded by the start timeout instead.)
        guard await Self.waitForFile(paths.startupListener, seconds: min(timeout, 60)) else {
            throw .init(.timedOut, "the startup listener \(paths.startupListener) did not come up")
        }

        let arguments = vmmArguments(options, boot: boot, resources: resources, paths: paths)
        let process: ChildProcess
        do {
            process = try ChildProcess.spawn(
                executable: config.vmmPath, arguments: arguments, descriptors: [tap.fd], output: paths.vmmLog)
        } catch {
            throw .failed("starting vmm for \(name): \(error)")
        }
        startingProcesses[name] = process
        state.startingVMMs = (state.startingVMMs ?? [:]).merging(
            [name: ProcessIdentity(pid: process.pid, startTicks: Self.startTicks(of: process.pid) ?? 0)]
        ) { $1 }
        persistLogging()
        // vmm holds its own copy of the TAP now; ours closes when `tap` goes, and the TAP
        // lives exactly as long as the VMM.
        do throws(ConciergeError) {
            let readyRequest: Vmtools_Guest_VmReadyRequest
            switch await firstOf(listener, orExitOf: process) {
            case .ready(let request): readyRequest = request
            case .listenerFailed(let error):
                throw error is CancellationError
                    ? .failed("StartVm for \(name) was cancelled")
                    : .init(
                        .timedOut,
                        "VM \(name) did not become ready within \(Int(timeout)) s: \(error)\(vmmLogTail(paths))")
            case .exited(let termination):
                throw .failed("vmm for \(name) \(termination) before the guest was ready\(vmmLogTail(paths))")
            }
            _ = tap
            try await configureGuest(paths: paths, subnet: subnet)
            var mountedServer = shareServer
            if let server = shareServer, !(await mountSharedFolder(name, paths: paths)) {
                stopShareServer(server)
                mountedServer = nil
            }
            do throws(ConciergeError) {
                try await startMojoProxy(options, paths: paths)
            } catch {
                if !options.mojoChannels.isEmpty { stopMojoProxy(name) }
                throw error
            }
            if let gid = VMPaths.groupID(config.userGroup) {
                for failure in paths.share(withGroup: gid) {
                    log("VM \(name): sharing with group \(config.userGroup): \(failure)")
                }
            }
            let record = VMRecord(
                name: name, pid: process.pid, startTicks: Self.startTicks(of: process.pid) ?? 0, resources: resources,
                tap: tapName, cpus: options.cpus, memoryMiB: options.memoryMiB, kernel: readyRequest.kernelRelease,
                startedAt: Date().timeIntervalSince1970, disks: options.disks, writableDisks: options.writableDisks,
                shareServer: mountedServer, mojoChannels: options.mojoChannels.isEmpty ? nil : options.mojoChannels)
            handedOver = true
            return (process, info(for: record, state: "running"), record)
        } catch {
            // A VMM that runs but whose guest never got ready, or could not be configured, goes
            // too; the caller frees what it held.
            process.signal(SIGKILL)
            _ = await process.terminated()
            throw error
        }
    }

    /// vmm's command line for this VM.
    func vmmArguments(
        _ options: VMOptions, boot: (kernel: String, initrd: String), resources: VMResources, paths: VMPaths
    )
        -> [String]
    {
        var params = "quiet maitred.hostname=\(options.name)"
        if let root = options.root { params += " maitred.root=\(root)" }
        if !options.params.isEmpty { params += " \(options.params)" }
        var arguments = [
            "run", "--kernel", boot.kernel, "--cpus", "\(options.cpus)", "--mem", "\(options.memoryMiB)",
            "--cid", "\(resources.cid)", "--vsock", paths.vsock,
            "--vsock-listen", "\(GuestEndpoint.maitredPort):\(paths.maitred)",
            "--vsock-listen", "\(GuestEndpoint.shellPort):\(paths.shell)",
            "--socket", paths.control, "--serial", "file=\(paths.serialLog)", "--no-console-input",
            "--tap-fd", "3", "--mac", resources.mac, "--params", params,
        ]
        if !boot.initrd.isEmpty { arguments += ["--initrd", boot.initrd] }
        for disk in options.disks { arguments += ["--disk", disk] }
        for disk in options.writableDisks { arguments += ["--rwdisk", disk] }
        return arguments
    }

    /// The guest's eth0 gets the /30's guest address, the host as gateway and the host's own
    /// name servers (unless they are loopback ones, which the guest cannot reach); its clock is
    /// set to the host's.
    private func configureGuest(paths: VMPaths, subnet: IPv4Subnet) async throws(ConciergeError) {
        var network = Vmtools_Guest_NetworkConfig()
        network.interface = "eth0"
        network.address = "\(subnet.guest)"
        network.netmask = "\(subnet.netmask)"
        network.gateway = "\(subnet.host)"
        network.dnsServers = Self.hostNameServers()
        var time = Vmtools_Guest_SetTimeRequest()
        let now = Date().timeIntervalSince1970
        time.seconds = Int64(now)
        time.nanos = Int32((now - now.rounded(.down)) * 1e9)
        do {
            try await GuestEndpoint.socket(paths.maitred).withClient { client in
                let maitred = Vmtools_Guest_Maitred.Client(wrapping: client)
                _ = try await maitred.configureNetwork(network)
                _ = try await maitred.setTime(time)
            }
        } catch let error as RPCError {
            throw .failed("configuring the guest through maitred: \(error.message)")
        } catch {
            throw .failed("configuring the guest through maitred: \(error)")
        }
    }

    static func hostNameServers() -> [String] {
        guard let text = try? String(contentsOfFile: "/etc/resolv.conf", encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { line -> String? in
            let words = line.split(separator: " ", omittingEmptySubsequences: true)
            guard words.count >= 2, words[0] == "nameserver", !words[1].hasPrefix("127."), words[1] != "::1" else {
                return nil
            }
            return String(words[1])
        }
    }

    private enum ReadyOutcome: Sendable {
        case ready(Vmtools_Guest_VmReadyRequest)
        case listenerFailed(any Error)
        case exited(ChildProcess.Termination)
    }

    /// VmReady, or vmm's end, whichever comes first.
    private func firstOf(_ listener: Task<Vmtools_Guest_VmReadyRequest, any Error>, orExitOf process: ChildProcess)
        async
        -> ReadyOutcome
    {
        await withTaskGroup(of: ReadyOutcome.self) { group in
            group.addTask {
                do { return .ready(try await listener.value) } catch { return .listenerFailed(error) }
            }
            group.addTask {
                // Polled, so that the group can end this task once VmReady came first.
                while !Task.isCancelled {
                    if let termination = process.termination { return .exited(termination) }
                    try? await Task.sleep(for: .milliseconds(50))
                }
                return .listenerFailed(CancellationError())
            }
            let first = await group.next() ?? .listenerFailed(CancellationError())
            listener.cancel()
            group.cancelAll()
            return first
        }
    }

    /// `: <last lines of vmm's log>`, for errors about a VM that did not come up.
    func vmmLogTail(_ paths: VMPaths) -> String {
        guard let text = try? String(contentsOfFile: paths.vmmLog, encoding: .utf8) else { return "" }
        let lines = text.split(separator: "\n").filter { !$0.hasPrefix("[") }.suffix(3)
        return lines.isEmpty ? "" : "; vmm said: " + lines.joined(separator: " | ")
    }

    static func waitForFile(_ path: String, seconds: Double) async -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while ContinuousClock.now < deadline {
            if access(path, F_OK) == 0 { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return access(path, F_OK) == 0
    }
}
