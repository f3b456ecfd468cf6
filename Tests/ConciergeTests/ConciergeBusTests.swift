import ConciergeService
import DBus
import DBusTestSupport
import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// concierge's D-Bus interface on a real, private dbus-daemon, driven by the real busctl.
@Suite("concierge on D-Bus", .serialized)
final class ConciergeBusTests {
    let fixture: VMManagerTests.Fixture
    let bus: PrivateBus
    let address: String
    let connection: DBusConnection
    let manager: VMManager

    init() async throws {
        fixture = try VMManagerTests.Fixture()
        bus = try await PrivateBus()
        address = bus.address
        connection = try await bus.connect()
        let signals = ConciergeSignals(connection: connection) { _ in }
        manager = try VMManager(config: fixture.config, log: { _ in }) { signals.emit($0) }
        let interface = ConciergeInterface.make(
            manager: manager, disks: DiskImages(config: fixture.config), runningVMs: { signals.runningVMs }
        ) { sender throws(DBusError) in try CallerPolicy().authorize(sender) }
        _ = try await connection.export(interface, at: ConciergeInterface.path)
        try await connection.requestName(ConciergeInterface.name)
    }

    deinit { bus.terminate() }

    /// `busctl call` on concierge (as `uid` through setpriv when given): status and output.
    /// Waits without blocking a thread: concierge's handlers need the cooperative pool too.
    func call(_ member: String, _ arguments: String..., as uid: UInt32? = nil) async throws -> (
        status: Int32, out: String
    ) {
        var command = [
            "/usr/bin/busctl", "--address=\(address)", "call", ConciergeInterface.name, ConciergeInterface.path,
        ]
        command += [ConciergeInterface.name, member] + arguments
        if let uid { command = ["/usr/bin/setpriv", "--reuid=\(uid)", "--regid=\(uid)", "--clear-groups"] + command }
        return try await Self.run(command)
    }

    /// Runs a short-lived command, 30 s at most, and returns its status and merged output.
    static func run(_ command: [String], environment: [String: String] = [:]) async throws -> (
        status: Int32, out: String
    ) {
        let process = Process()
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        let ended = AsyncStream<Void>.makeStream()
        process.terminationHandler = { _ in ended.continuation.finish() }
        try process.run()
        let timeout = Task {
            try await Task.sleep(for: .seconds(30))
            kill(process.processIdentifier, SIGKILL)
        }
        for await _ in ended.stream {}
        timeout.cancel()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    @Test("the exported interface is exactly dbus/interfaces/org.vmtools.Concierge.xml")
    func introspection() async throws {
        let blocks = try await bus.interfaceBlocks(ConciergeInterface.name, path: ConciergeInterface.path)
        let exported = try #require(blocks.exported, "busctl shows the interface")
        #expect(exported == blocks.committed, "regenerate the XML when the interface changes")
    }

    @Test("bad calls get named errors: unknown options, mistyped options, unknown VMs")
    func errors() async throws {
        let unknown = try await call("StartVm", "sa{sv}", "demo", "1", "bogus", "s", "x")
        #expect(unknown.status != 0 && unknown.out.contains("unknown option bogus"), "\(unknown.out)")
        let mistyped = try await call("StartVm", "sa{sv}", "demo", "1", "cpus", "s", "two")
        #expect(mistyped.status != 0 && mistyped.out.contains("option cpus must be u, got s"), "\(mistyped.out)")
        let badName = try await call("StartVm", "sa{sv}", "../x", "0")
        #expect(badName.status != 0 && badName.out.contains("VM name '../x'"), "\(badName.out)")
        let badChannels = try await call(
            "StartVm", "sa{sv}", "demo", "1", "mojo_channels", "a(uss)", "2", "1", "/a.sock", "/b.sock", "1", "/c.sock",
            "/d.sock")
        #expect(
            badChannels.status != 0 && badChannels.out.contains("mojo channel 1 is given twice"), "\(badChannels.out)")
        let mistypedChannels = try await call("StartVm", "sa{sv}", "demo", "1", "mojo_channels", "as", "1", "x")
        #expect(
            mistypedChannels.status != 0
                && mistypedChannels.out.contains("option mojo_channels must be a(uss), got as"),
            "\(mistypedChannels.out)")
        let missing = try await call("GetVmInfo", "s", "nope")
        #expect(missing.status != 0 && missing.out.contains("no VM named nope"), "\(missing.out)")
        let listed = try await call("ListVms")
        #expect(listed.status == 0 && listed.out.trimmingCharacters(in: .whitespacesAndNewlines) == "aa{sv} 0")
        let property = try await Self.run([
            "/usr/bin/busctl", "--address=\(address)", "get-property", ConciergeInterface.name, ConciergeInterface.path,
            ConciergeInterface.name, "RunningVms",
        ])
        #expect(property.out.trimmingCharacters(in: .whitespacesAndNewlines) == "as 0", "\(property.out)")
    }

    @Test("a StartVm that fails says why, as org.vmtools.Error.Failed, with VmStarting then VmStopped")
    func failedStart() async throws {
        try #require(getuid() == 0, "StartVm makes TAP interfaces, which needs root")
        let watcher = try await DBusConnection.open(.address(address))
        let rule = DBusMatchRule(interface: ConciergeInterface.name)
        let stream = try await watcher.signals(rule)
        let failed = try await call("StartVm", "sa{sv}", "broken", "2", "image", "s", "fake", "memory_mib", "u", "64")
        #expect(failed.status != 0 && failed.out.contains("before the guest was ready"), "\(failed.out)")
        let collector = Task {
            var seen: [String] = []
            for await signal in stream {
                seen.append("\(signal.member) \(signal.arguments.map { "\($0)" }.joined(separator: " "))")
                if seen.count == 2 { break }
            }
            return seen
        }
        let bound = Task {
            try await Task.sleep(for: .seconds(20))
            collector.cancel()
        }
        let seen = await collector.value
        bound.cancel()
        #expect(seen.first?.hasPrefix("VmStarting") == true, "\(seen)")
        #expect(seen.last?.hasPrefix("VmStopped") == true && seen.last?.contains("start-failed") == true, "\(seen)")
        await watcher.close()
    }

    @Test("disk images: create, list, refuse to overwrite, destroy")
    func disks() async throws {
        let created = try await call("CreateDiskImage", "sta{sv}", "data", "1048576", "0")
        #expect(
            created.status == 0 && created.out.contains("\(fixture.config.disksDirectory)/data.img"), "\(created.out)")
        let again = try await call("CreateDiskImage", "sta{sv}", "data", "1048576", "0")
        #expect(again.status != 0 && again.out.contains("already exists"), "\(again.out)")
        let listed = try await call("ListDiskImages")
        #expect(listed.out.contains("\"size_bytes\" t 1048576"), "\(listed.out)")
        #expect(try await call("DestroyDiskImage", "s", "data").status == 0)
        #expect(try await call("DestroyDiskImage", "s", "data").out.contains("no disk named data"))
    }

    @Test("a caller that is neither root nor in the vmtools group is refused")
    func strangers() async throws {
        try #require(getuid() == 0, "calling as another user (setpriv) needs root")
        let refused = try await call("ListVms", as: 65534)
        #expect(refused.status != 0 && refused.out.contains("uid 65534 may not manage VMs"), "\(refused.out)")
    }

    // MARK: - Pools over D-Bus

    @Test("no /30 left: StartVm is org.vmtools.Error.ResourceExhausted naming the pool, and nothing is held")
    func exhausted() async throws {
        var config = fixture.config
        config.stateDirectory = "\(fixture.folder)/exhausted"
        config.pools.subnetCount = 0
        try FileManager.default.createDirectory(atPath: config.stateDirectory, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(
            atPath: config.imagesDirectory, withDestinationPath: fixture.config.imagesDirectory)
        let manager = try VMManager(config: config, log: { _ in }) { _ in }
        let server = try await DBusConnection.open(.address(address))
        _ = try await server.export(
            ConciergeInterface.make(manager: manager, disks: DiskImages(config: config)) { _ throws(DBusError) in },
            at: ConciergeInterface.path)
        let client = try await DBusConnection.open(.address(address))
        await #expect {
            _ = try await client.call(
                destination: server.uniqueName, path: ConciergeInterface.path, interface: ConciergeInterface.name,
                member: "StartVm", [.string("demo"), .options(["image": .string("fake")])])
        } throws: { error in
            guard let error = error as? DBusError else { return false }
            return error.name == "org.vmtools.Error.ResourceExhausted" && error.message.contains("IPv4 subnets")
        }
        #expect(await manager.list().isEmpty)
        let saved = try StateFile<ConciergeState>(path: config.stateFile).load()
        #expect(saved?.pools.held.isEmpty ?? true, "nothing stays allocated")
        await client.close()
        await server.close()
    }

    // MARK: - vmtoolsctl

    /// The vmtoolsctl built beside the tests, on this bus (as the system bus), as `uid` if given.
    func vmtoolsctl(_ arguments: String..., as uid: UInt32? = nil) async throws -> (status: Int32, out: String) {
        var command = [builtProduct("vmtoolsctl")] + arguments
        if let uid { command = ["/usr/bin/setpriv", "--reuid=\(uid)", "--regid=\(uid)", "--clear-groups"] + command }
        return try await Self.run(command, environment: ["DBUS_SYSTEM_BUS_ADDRESS": address])
    }

    @Test("vmtoolsctl lists VMs, manages disks and says what went wrong in one line")
    func commandLine() async throws {
        let none = try await vmtoolsctl("list")
        #expect(none.status == 0 && none.out.contains("no VMs running"), "\(none.out)")
        let noneJSON = try await vmtoolsctl("list", "--json")
        #expect((try? JSONSerialization.jsonObject(with: Data(noneJSON.out.utf8))) as? [Any] != nil, "\(noneJSON.out)")

        let created = try await vmtoolsctl("disk", "create", "scratch", "--size", "2M")
        #expect(created.status == 0 && created.out.contains("/disks/scratch.img"), "\(created.out)")
        let table = try await vmtoolsctl("disk", "list")
        #expect(table.out.contains("scratch") && table.out.contains("2.0M"), "\(table.out)")
        let json = try await vmtoolsctl("disk", "list", "--json")
        let disks = try JSONSerialization.jsonObject(with: Data(json.out.utf8)) as? [[String: Any]]
        #expect(disks?.first?["size_bytes"] as? Int == 2 << 20, "\(json.out)")
        let badSize = try await vmtoolsctl("disk", "create", "other", "--size", "lots")
        #expect(badSize.status != 0 && badSize.out.contains("--size lots is not a size"), "\(badSize.out)")
        #expect(try await vmtoolsctl("disk", "destroy", "scratch").status == 0)
        let gone = try await vmtoolsctl("disk", "destroy", "scratch")
        #expect(gone.status == 1 && gone.out.contains("no disk named scratch (NotFound)"), "\(gone.out)")

        let info = try await vmtoolsctl("info", "nope")
        #expect(info.status == 1 && info.out.contains("no VM named nope (NotFound)"), "\(info.out)")
        let shell = try await vmtoolsctl("shell", "nope", "--", "true")
        #expect(shell.status == 1 && shell.out.contains("no VM named nope"), "\(shell.out)")
        let unnamed = try await vmtoolsctl("exec", "--", "true")
        #expect(unnamed.status != 0 && unnamed.out.contains("name a VM"), "\(unnamed.out)")
        let badStart = try await vmtoolsctl("start", "x", "--cpus", "0")
        #expect(
            badStart.status == 1 && badStart.out.contains("cpus 0 is outside 1–32 (InvalidArgument)"), "\(badStart.out)"
        )
        if getuid() == 0 {
            let stranger = try await vmtoolsctl("list", as: 65534)
            #expect(
                stranger.status == 1 && stranger.out.contains("may not manage VMs")
                    && stranger.out.contains("group vmtools"), "\(stranger.out)")
        }
    }
}
