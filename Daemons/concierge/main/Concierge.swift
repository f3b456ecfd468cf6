// concierge: the VM manager on the system D-Bus (org.vmtools.Concierge).
//
//   concierge [--bus system|ADDRESS] [--state-dir DIR] [--runtime-dir DIR] [--vmm PATH]
//
// Runs under systemd (vmtools-concierge.service, Type=notify); logs to the journal.
import ArgumentParser
import ConciergeService
import DBus
import Journal
import Logging
import Processes

#if canImport(Glibc)
    import Glibc
#endif

@main
struct Concierge: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "concierge", abstract: "vmtools' VM manager: org.vmtools.Concierge on the system bus.")

    @Option(help: "The bus: system, or a D-Bus address such as unix:path=/run/test-bus.")
    var bus = "system"

    @Option(help: "Persistent state: allocations, disks, guest images.")
    var stateDir = "/var/lib/vmtools"

    @Option(help: "Per-VM runtime folders.")
    var runtimeDir = "/run/vmtools"

    @Option(help: "The vmm executable (default: bin/vmm under concierge's own install prefix).")
    var vmm: String?

    @Option(help: "Seconds a guest may take to become ready.")
    var startTimeout: Double = 120

    func run() async throws {
        let stopSignals = StopSignals()
        signal(SIGPIPE, SIG_IGN)

        LoggingSystem.bootstrap { JournalLogHandler(label: $0, identifier: "vmtools-concierge") }
        let log = Logger(label: "concierge")

        var config = ConciergeConfiguration()
        config.stateDirectory = stateDir
        config.runtimeDirectory = runtimeDir
        config.vmmPath = vmm ?? Self.installedVMM()
        config.startTimeoutSeconds = startTimeout

        let connection = try await DBusConnection.open(bus == "system" ? .system : .address(bus))
        let signals = ConciergeSignals(connection: connection) { log.error("\($0)") }
        let cicerone = CiceroneNotifier(connection: connection) { log.warning("\($0)") }
        let manager = try VMManager(
            config: config, log: { log.info("\($0)") },
            events: { event in
                signals.emit(event)
                cicerone.notify(event)
            },
            shareServers: SeneschalShareServers(connection: connection),
            mojoProxies: SystemdMojoProxies(connection: connection))
        let adopted = await manager.resume()
        signals.adopt(adopted)
        for info in await manager.list() { cicerone.notify(.started(info)) }
        let policy = CallerPolicy()
        _ = try await connection.export(
            ConciergeInterface.make(
                manager: manager, disks: DiskImages(config: config), runningVMs: { signals.runningVMs }
            ) { sender throws(DBusError) in
                try policy.authorize(sender)
            },
            at: ConciergeInterface.path)
        try await connection.requestName(ConciergeInterface.name)
        log.info("serving \(ConciergeInterface.name); vmm \(config.vmmPath); \(adopted.count) VMs re-adopted")
        _ = SystemdNotify.ready(status: "serving; \(adopted.count) VMs re-adopted")

        let signal = await stopSignals.next()
        _ = SystemdNotify.stopping()
        await manager.abortStarts()
        // `systemctl restart` (an upgrade, say) keeps the VMs: the next concierge re-adopts them.
        // A stop, a shutdown or Ctrl-C stops them cleanly.
        let job = signal == SIGTERM ? await connection.systemdJobType() : nil
        if job == "restart" || job == "try-restart" {
            let names = await manager.list().map(\.name)
            log.info("signal \(signal) for a restart: leaving \(names.count) VMs running for the next concierge")
        } else {
            log.info("signal \(signal) (job \(job ?? "none")): stopping every VM")
            await manager.stopAll(reason: .serviceShutdown)
        }
        await connection.close()
    }

    /// `<prefix>/bin/vmm` for concierge installed as `<prefix>/libexec/vmtools/concierge`.
    static func installedVMM() -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        let exe = n > 0 ? String(decoding: buffer.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self) : ""
        var parts = exe.split(separator: "/", omittingEmptySubsequences: false)
        if parts.count >= 4, parts[parts.count - 3] == "libexec" {
            parts.removeLast(3)
            return parts.joined(separator: "/") + "/bin/vmm"
        }
        return "/usr/local/bin/vmm"
    }
}
