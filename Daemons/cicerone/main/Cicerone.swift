// cicerone: containers and their applications in vmtools' VMs, on the system D-Bus
// (org.vmtools.Cicerone). It listens for each VM's garcons on `<vsock socket>_8889`, starts
// containers through maitred and reaches garcon through the VM's vsock socket.
//
//   cicerone [--bus system|ADDRESS] [--state-dir DIR] [--runtime-dir DIR]
//
// Runs under systemd (vmtools-cicerone.service, D-Bus activated); logs to the journal.
import ArgumentParser
import CiceroneService
import DBus
import Journal
import Logging
import Processes

#if canImport(Glibc)
    import Glibc
#endif

@main
struct Cicerone: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cicerone",
        abstract: "vmtools' containers and applications: org.vmtools.Cicerone on the system bus.")

    @Option(help: "The bus: system, or a D-Bus address such as unix:path=/run/test-bus.")
    var bus = "system"

    @Option(help: "Persistent state: the containers CreateContainer made.")
    var stateDir = "/var/lib/cicerone"

    @Option(help: "Runtime state: the running containers and their tokens, for a restarted cicerone.")
    var runtimeDir = "/run/cicerone"

    @Option(help: "Seconds StartContainer waits for garcon's ContainerReady.")
    var readyTimeout: Int = 30

    func run() async throws {
        let stopSignals = StopSignals()
        signal(SIGPIPE, SIG_IGN)
        LoggingSystem.bootstrap { JournalLogHandler(label: $0, identifier: "vmtools-cicerone") }
        let log = Logger(label: "cicerone")

        let connection = try await DBusConnection.open(bus == "system" ? .system : .address(bus))
        let signals = DBusSignalQueue<ContainerEvent>(cicerone: connection) { log.error("\($0)") }
        var config = CiceroneManager.Configuration()
        config.stateFile = "\(stateDir)/containers.json"
        config.runningFile = "\(runtimeDir)/running.json"
        config.readyTimeout = .seconds(readyTimeout)
        let manager = try CiceroneManager(
            configuration: config, directory: ConciergeVMDirectory(connection: connection),
            events: { signals.emit($0) }, log: { log.info("\($0)") })
        // The containers a cicerone before this one left running (after a restart or a crash).
        await manager.resume()
        let policy = CallerPolicy(purpose: "manage containers")
        _ = try await connection.export(
            CiceroneInterface.make(manager: manager) { sender throws(DBusError) in try policy.authorize(sender) },
            at: CiceroneInterface.path)
        try await connection.requestName(CiceroneInterface.name)
        log.info("serving \(CiceroneInterface.name); containers in \(config.stateFile)")
        _ = SystemdNotify.ready(status: "serving")

        let number = await stopSignals.next()
        _ = SystemdNotify.stopping()
        log.info("signal \(number): closing every VM's container listener")
        await manager.stopAll()
        await connection.close()
    }
}
