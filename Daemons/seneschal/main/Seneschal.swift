// seneschal: vmtools' file-sharing daemon on the system D-Bus (org.vmtools.Seneschal). Each
// StartServer runs a sandboxed seneschal-server; SharePath mounts folders into it.
//
//   seneschal [--bus system|ADDRESS] [--runtime-dir DIR] [--server PATH]
//
// Runs under systemd (vmtools-seneschal.service, D-Bus activated); logs to the journal.
import ArgumentParser
import DBus
import Journal
import Logging
import Processes
import SeneschalService

#if canImport(Glibc)
    import Glibc
#endif

@main
struct Seneschal: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "seneschal", abstract: "vmtools' folder sharing: org.vmtools.Seneschal on the system bus.")

    @Option(help: "The bus: system, or a D-Bus address such as unix:path=/run/test-bus.")
    var bus = "system"

    @Option(help: "Where each server gets its folder.")
    var runtimeDir = "/run/seneschal"

    @Option(help: "The per-server executable (default: seneschal-server beside seneschal).")
    var server: String?

    func run() async throws {
        let stopSignals = StopSignals()
        signal(SIGPIPE, SIG_IGN)
        LoggingSystem.bootstrap { JournalLogHandler(label: $0, identifier: "vmtools-seneschal") }
        let log = Logger(label: "seneschal")

        var config = SeneschalConfiguration()
        config.runtimeDirectory = runtimeDir
        config.serverPath = server ?? Self.besideSelf("seneschal-server")
        let manager = try ServerManager(config: config) { log.info("\($0)") }
        let connection = try await DBusConnection.open(bus == "system" ? .system : .address(bus))
        let policy = CallerPolicy(purpose: "share folders")
        _ = try await connection.export(
            SeneschalInterface.make(manager: manager) { sender throws(DBusError) in try policy.authorize(sender) },
            at: SeneschalInterface.path)
        try await connection.requestName(SeneschalInterface.name)
        log.info("serving \(SeneschalInterface.name); servers run \(config.serverPath)")
        _ = SystemdNotify.ready(status: "serving")

        let number = await stopSignals.next()
        _ = SystemdNotify.stopping()
        log.info("signal \(number): stopping every server")
        await manager.stopAll()
        await connection.close()
    }

    /// `name` in the folder of this executable.
    static func besideSelf(_ name: String) -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { return name }
        let exe = String(decoding: buffer.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return exe.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/") + "/"
            + name
    }
}
