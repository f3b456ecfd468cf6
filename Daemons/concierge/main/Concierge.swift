// concierge: the VM manager on the system D-Bus (org.vmtools.Concierge).
//
//   concierge [--bus system|ADDRESS] [--state-dir DIR] [--runtime-dir DIR] [--vmm PATH]
//
// Runs under systemd (vmtools-concierge.service, Type=notify); logs to the journal.
import ArgumentParser
import ConciergeService
import DBus
import EventLoop
import Journal
import Logging

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
        // Before any thread exists, so that only the waiting thread takes these signals.
        var stopSignals = sigset_t()
        sigemptyset(&stopSignals)
        sigaddset(&stopSignals, SIGTERM)
        sigaddset(&stopSignals, SIGINT)
        pthread_sigmask(SIG_BLOCK, &stopSignals, nil)
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
        let manager = try VMManager(config: config, log: { log.info("\($0)") }) { signals.emit($0) }
        let adopted = await manager.resume()
        let policy = CallerPolicy()
        _ = try await connection.export(
            ConciergeInterface.make(manager: manager, disks: DiskImages(config: config)) { sender throws(DBusError) in
                try policy.authorize(sender)
            },
            at: ConciergeInterface.path)
        try await connection.requestName(ConciergeInterface.name)
        log.info("serving \(ConciergeInterface.name); vmm \(config.vmmPath); \(adopted.count) VMs re-adopted")
        _ = SystemdNotify.ready(status: "serving; \(adopted.count) VMs re-adopted")

        let signal = await Self.waitForStopSignal(stopSignals)
        log.info("signal \(signal): stopping every VM")
        _ = SystemdNotify.stopping()
        await manager.stopAll(reason: .serviceShutdown)
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

    /// Waits on a thread of its own (sigwait) for SIGTERM or SIGINT.
    static func waitForStopSignal(_ set: sigset_t) async -> Int32 {
        await withCheckedContinuation { continuation in
            do {
                try HostThread.detached(name: "signals") {
                    var set = set
                    var received: Int32 = 0
                    sigwait(&set, &received)
                    continuation.resume(returning: received)
                }
            } catch {
                continuation.resume(returning: SIGTERM)
            }
        }
    }
}
