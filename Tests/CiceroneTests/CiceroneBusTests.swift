import DBus
import DBusTestSupport
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import GuestProtocol
import Synchronization
import TestSupport
import Testing

@testable import CiceroneService

#if canImport(Glibc)
    import Glibc
#endif

/// cicerone on a real, private dbus-daemon, driven by the real busctl, with its real
/// ContainerListener sockets. The VMs are folders standing where concierge's runtime folders
/// would be: what cicerone does with a running guest (maitred, garcon) is the testbed's
/// (Tests/integration/cicerone.sh).
@Suite("cicerone on D-Bus", .serialized)
final class CiceroneBusTests {
    let bus: PrivateBus
    let connection: DBusConnection
    let manager: CiceroneManager
    let base: String
    let events = EventLog()

    final class EventLog: Sendable {
        private let events = Mutex<[ContainerEvent]>([])
        func append(_ event: ContainerEvent) { events.withLock { $0.append(event) } }
        var all: [ContainerEvent] { events.withLock { $0 } }
    }

    init() async throws {
        var template = Array("/tmp/cicerone-test-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw TestFailure("mkdtemp failed") }
        base = String(cString: made)
        var configuration = CiceroneManager.Configuration()
        configuration.stateFile = base + "/state/containers.json"
        configuration.runningFile = base + "/run/running.json"
        let events = self.events
        manager = try CiceroneManager(
            configuration: configuration, directory: nil, events: { events.append($0) }, log: { _ in })
        bus = try await PrivateBus()
        connection = try await bus.connect()
        _ = try await connection.export(
            CiceroneInterface.make(manager: manager) { sender throws(DBusError) in
                try CallerPolicy(purpose: "manage containers").authorize(sender)
            }, at: CiceroneInterface.path)
        try await connection.requestName(CiceroneInterface.name)
    }

    deinit {
        bus.terminate()
        let manager = manager
        let base = base
        Task {
            await manager.stopAll()
            try? FileManager.default.removeItem(atPath: base)
        }
    }

    /// `busctl call` on cicerone: status and output (stdout, or stderr on failure).
    func call(_ member: String, _ arguments: String..., asUser user: UInt32? = nil) async throws -> (
        status: Int32, out: String
    ) {
        let result = try await bus.busctl(
            ["call", CiceroneInterface.name, CiceroneInterface.path, CiceroneInterface.name, member] + arguments,
            asUser: user)
        return (result.status, result.status == 0 ? result.out : result.err)
    }

    /// Tells cicerone of VM `name` (CID `cid`), whose runtime folder is `<base>/<name>`.
    func notifyStarted(_ name: String, cid: UInt32) async throws {
        try FileManager.default.createDirectory(atPath: "\(base)/\(name)", withIntermediateDirectories: true)
        let reply = try await call(
            "NotifyVmStarted", "sa{sv}", name, "3", "cid", "u", "\(cid)", "vsock_socket", "s",
            "\(base)/\(name)/vsock.sock", "maitred_socket", "s", "\(base)/\(name)/maitred.sock")
        #expect(reply.status == 0, "\(reply.out)")
    }

    @Test("the exported interface is exactly dbus/interfaces/org.vmtools.Cicerone.xml")
    func introspection() async throws {
        let blocks = try await bus.interfaceBlocks(CiceroneInterface.name, path: CiceroneInterface.path)
        let exported = try #require(blocks.exported, "busctl shows the interface")
        #expect(exported == blocks.committed, "regenerate the XML when the interface changes:\n\(exported)")
    }

    @Test("NotifyVmStarted opens the VM's listener at <vsock socket>_8889, NotifyVmStopped closes it")
    func listenerFollowsTheVM() async throws {
        try await notifyStarted("vm1", cid: 7)
        let listener = "\(base)/vm1/vsock.sock_8889"
        var info = stat()
        #expect(stat(listener, &info) == 0 && info.st_mode & S_IFMT == S_IFSOCK, "a socket at \(listener)")
        // The same VM told again (a restarted concierge) is no change.
        try await notifyStarted("vm1", cid: 7)
        #expect(await manager.vms["vm1"]?.vm.cid == 7)
        #expect(try await call("NotifyVmStopped", "s", "vm1").status == 0)
        #expect(access(listener, F_OK) != 0, "the listener is gone")
        #expect(await manager.vms.isEmpty)
    }

    @Test("containers are created, listed, persisted and destroyed; each mistake gets a named error")
    func containerDefinitions() async throws {
        try await notifyStarted("vm1", cid: 7)
        #expect(try await call("CreateContainer", "ssa{sv}", "vm1", "penguin", "0").status == 0)
        let created = try await call(
            "CreateContainer", "ssa{sv}", "vm1", "dev", "2", "image", "s", "/srv/debian", "hostname", "s", "devbox")
        #expect(created.status == 0, "\(created.out)")
        let listing = try await call("ListContainers", "s", "vm1")
        #expect(listing.out.contains("\"penguin\"") && listing.out.contains("\"dev\""), "\(listing.out)")
        #expect(listing.out.contains("\"/var/lib/vmtools/containers/penguin\""), "\(listing.out)")
        #expect(listing.out.contains("\"stopped\""), "\(listing.out)")
        let saved = try CiceroneState.load(from: base + "/state/containers.json")
        #expect(saved.containers.map(\.name) == ["penguin", "dev"])
        #expect(saved.containers.last?.image == "/srv/debian" && saved.containers.last?.hostname == "devbox")

        let mistakes: [(arguments: [String], error: String)] = [
            (["CreateContainer", "ssa{sv}", "vm1", "penguin", "0"], "container penguin of VM vm1 exists"),
            (["CreateContainer", "ssa{sv}", "vm1", "Bad_Name", "0"], "container name 'Bad_Name'"),
            (["CreateContainer", "ssa{sv}", "vm1", "x", "1", "image", "s", "relative"], "image 'relative' must be"),
            (["CreateContainer", "ssa{sv}", "vm1", "x", "1", "changes_dir", "s", "/a/../b"], "changes_dir '/a/../b'"),
            (["CreateContainer", "ssa{sv}", "vm1", "x", "1", "changes_dir", "s", "/a,b"], "changes_dir '/a,b'"),
            (["CreateContainer", "ssa{sv}", "vm1", "x", "1", "image", "u", "3"], "option image must be s"),
            (["CreateContainer", "ssa{sv}", "vm1", "x", "1", "colour", "s", "red"], "unknown option colour"),
            (["CreateContainer", "ssa{sv}", "nosuchvm", "x", "0"], "no VM named nosuchvm is running"),
            (["StartContainer", "ssa{sv}", "vm1", "nothere", "0"], "no container nothere of VM vm1"),
            (
                ["StopContainer", "ssa{sv}", "vm1", "penguin", "0"],
                "stopping container penguin of VM vm1: VM vm1's maitred"
            ),
            (["GetContainerToken", "ss", "vm1", "penguin"], "is not running"),
            (["LaunchApplication", "ssa{sv}", "vm1", "penguin", "0"], "needs a desktop_file_id or an argv"),
            (["ListApplications", "ss", "vm1", "penguin"], "is not running"),
            (["GetApplicationIcon", "sssuu", "vm1", "penguin", "a.desktop", "0", "1"], "size must be 1 to 1024"),
            (["DestroyContainer", "ss", "vm1", "nothere"], "no container nothere of VM vm1"),
            (["NotifyVmStarted", "sa{sv}", "vm2", "1", "cid", "u", "9"], "missing option vsock_socket"),
            (["StartContainer", "s", "vm1"], "expecting 'ssa{sv}'"),
        ]
        for mistake in mistakes {
            let reply = try await bus.busctl(
                ["call", CiceroneInterface.name, CiceroneInterface.path, CiceroneInterface.name] + mistake.arguments)
            #expect(reply.status != 0, "\(mistake.arguments) was accepted")
            #expect(reply.err.contains(mistake.error), "\(mistake.arguments): \(reply.err)")
        }

        #expect(try await call("DestroyContainer", "ss", "vm1", "dev").status == 0)
        #expect(try CiceroneState.load(from: base + "/state/containers.json").containers.map(\.name) == ["penguin"])
        // A new cicerone finds what the last one created.
        let next = try CiceroneManager(
            configuration: await manager.configuration, directory: nil, events: { _ in }, log: { _ in })
        #expect(await next.list(vm: "vm1").map(\.definition.name) == ["penguin"])
    }

    @Test("only root may call NotifyVmStarted and NotifyVmStopped")
    func notificationsAreRootOnly() async throws {
        let nobody: UInt32 = 65534
        // The private bus lets anyone call; cicerone itself refuses.
        let reply = try await call(
            "NotifyVmStarted", "sa{sv}", "vm9", "3", "cid", "u", "9", "vsock_socket", "s", "\(base)/v",
            "maitred_socket",
            "s", "\(base)/m", asUser: nobody)
        #expect(reply.status != 0)
        #expect(reply.out.contains("only root (concierge) may call NotifyVmStarted"), "\(reply.out)")
        #expect(await manager.vms.isEmpty)
    }
}

// MARK: - The listener's checks

extension CiceroneBusTests {
    /// A container of `vm` that maitred has started (what StartContainer records before garcon
    /// calls): the token is the only way in, as in a running guest.
    func running(_ vm: String, _ name: String) async -> (key: ContainerKey, token: String) {
        let key = ContainerKey(vm: vm, name: name)
        let token = ContainerToken.make()
        await manager.recordStarting(key, token: token, garconPort: 8890)
        return (key, token)
    }

    /// A ContainerListener client on `vm`'s listener socket, as garcon in that VM would be.
    func listener<Result: Sendable>(
        _ vm: String,
        _ body: (Vmtools_Container_ContainerListener.Client<HTTP2ClientTransport.Posix>) async throws -> Result
    ) async throws -> Result {
        try await withGRPCClient(
            transport: .http2NIOPosix(
                target: .unixDomainSocket(path: "\(base)/\(vm)/vsock.sock_8889"), transportSecurity: .plaintext)
        ) { client in try await body(Vmtools_Container_ContainerListener.Client(wrapping: client)) }
    }

    @Test("a garcon is trusted only with its container's token, and only from its own VM's socket")
    func tokensAndVMs() async throws {
        try await notifyStarted("vm1", cid: 7)
        try await notifyStarted("vm2", cid: 8)
        let a = await running("vm1", "penguin")
        let b = await running("vm2", "penguin")
        #expect(a.token.utf8.count == 64 && a.token != b.token)

        func ready(_ token: String) -> Vmtools_Container_ContainerReadyRequest {
            var request = Vmtools_Container_ContainerReadyRequest()
            request.token = token
            request.garconPort = 8890
            return request
        }
        // vm2's token on vm1's socket, an unknown token, an empty one: refused, nothing changes.
        for token in [b.token, String(repeating: "0", count: 64), ""] {
            let error = await #expect(throws: RPCError.self) {
                try await self.listener("vm1") { _ = try await $0.containerReady(ready(token)) }
            }
            #expect(error?.code == .permissionDenied)
            #expect(error?.message == "refused: no container of VM vm1 has this token")
        }
        var url = Vmtools_Container_OpenUrlRequest()
        url.token = b.token
        url.url = "https://example.org/"
        await #expect(throws: RPCError.self) { try await self.listener("vm1") { _ = try await $0.openUrl(url) } }
        #expect(events.all.isEmpty, "no refused call made an event: \(events.all)")
        #expect(await manager.list(vm: "vm1").isEmpty)

        // The right token from the right VM.
        try await listener("vm1") { _ = try await $0.containerReady(ready(a.token)) }
        try await listener("vm2") { _ = try await $0.containerReady(ready(b.token)) }
        url.token = a.token
        try await listener("vm1") { _ = try await $0.openUrl(url) }
        var update = Vmtools_Container_UpdateApplicationListRequest()
        update.token = a.token
        update.applications = [Vmtools_Container_Application(), Vmtools_Container_Application()]
        try await listener("vm1") { _ = try await $0.updateApplicationList(update) }
        url.url = "bad\nurl"
        let bad = await #expect(throws: RPCError.self) {
            try await self.listener("vm1") { _ = try await $0.openUrl(url) }
        }
        #expect(bad?.code == .invalidArgument)
        var shutdown = Vmtools_Container_ContainerShutdownRequest()
        shutdown.token = a.token
        try await listener("vm1") { _ = try await $0.containerShutdown(shutdown) }
        #expect(
            events.all == [
                .started(a.key), .started(b.key), .openURL(a.key, url: "https://example.org/"),
                .applicationsChanged(a.key, count: 2), .stopped(a.key, reason: "container-shutdown"),
            ])
        // A token is not good after its container stopped.
        await #expect(throws: RPCError.self) {
            try await self.listener("vm1") { _ = try await $0.containerReady(ready(a.token)) }
        }

        // The VM's end stops its containers.
        #expect(try await call("NotifyVmStopped", "s", "vm2").status == 0)
        #expect(events.all.last == .stopped(b.key, reason: "vm-stopped"))
    }
}

// MARK: - vmtoolsctl

extension CiceroneBusTests {
    /// The vmtoolsctl built beside the tests, on this bus (as the system bus): status and
    /// stdout+stderr.
    func vmtoolsctl(_ arguments: String...) throws -> (status: Int32, out: String) { try vmtoolsctl(arguments) }

    func vmtoolsctl(_ arguments: [String]) throws -> (status: Int32, out: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: builtProduct("vmtoolsctl"))
        process.arguments = arguments
        process.environment = ["DBUS_SYSTEM_BUS_ADDRESS": bus.address, "PATH": "/usr/bin:/bin"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, text)
    }

    @Test("vmtoolsctl container create/list/destroy, and its errors in one line")
    func commandLine() async throws {
        try await notifyStarted("vm1", cid: 7)
        let created = try vmtoolsctl("container", "create", "vm1", "penguin", "--hostname", "pen")
        #expect(created.status == 0, "\(created.out)")
        let table = try vmtoolsctl("container", "list", "vm1")
        #expect(
            table.out.contains("penguin") && table.out.contains("stopped")
                && table.out.contains("/var/lib/vmtools/containers/penguin"), "\(table.out)")
        let json = try vmtoolsctl("container", "list", "vm1", "--json")
        let containers = try JSONSerialization.jsonObject(with: Data(json.out.utf8)) as? [[String: Any]]
        #expect(containers?.first?["hostname"] as? String == "pen", "\(json.out)")
        let again = try vmtoolsctl("container", "create", "vm1", "penguin")
        #expect(again.status == 1 && again.out.contains("container penguin of VM vm1 exists (AlreadyExists)"))
        let notRunning = try vmtoolsctl("app", "list", "vm1", "penguin")
        #expect(notRunning.status == 1 && notRunning.out.contains("is not running (NotFound)"), "\(notRunning.out)")
        let noCommand = try vmtoolsctl("app", "launch", "vm1", "penguin", "--")
        #expect(noCommand.status != 0 && noCommand.out.contains("give a desktop file ID, or --"), "\(noCommand.out)")
        // Options after the names and the ID, and a command after --, reach cicerone.
        for words in [
            ["app", "launch", "vm1", "penguin", "a.desktop", "--file", "/etc/hosts"],
            ["app", "launch", "vm1", "penguin", "--", "sh", "-c", "echo --file"],
        ] {
            let launched = try vmtoolsctl(words)
            #expect(
                launched.status == 1 && launched.out.contains("is not running (NotFound)"), "\(words): \(launched.out)")
        }
        let overlapping = try vmtoolsctl(
            "container", "create", "vm1", "inner", "--changes-dir", "/var/lib/vmtools/containers/penguin/inner")
        #expect(overlapping.out.contains("overlaps container penguin's"), "\(overlapping.out)")
        #expect(try vmtoolsctl("container", "destroy", "vm1", "penguin").status == 0)
        let empty = try vmtoolsctl("container", "list", "vm1")
        #expect(empty.out.contains("no containers in VM vm1"), "\(empty.out)")
    }
}

// MARK: - Restart

extension CiceroneBusTests {
    /// concierge's answers to GetVmInfo, for a cicerone that starts while VMs run.
    struct RunningVMs: VMDirectory {
        let vms: [GuestVM]
        func vm(named name: String) async throws -> GuestVM? { vms.first { $0.name == name } }
    }

    @Test("a restarted cicerone takes over the running containers: the VM's listener again, the same token")
    func restart() async throws {
        try await notifyStarted("vm1", cid: 7)
        let a = await running("vm1", "penguin")
        var ready = Vmtools_Container_ContainerReadyRequest()
        ready.token = a.token
        ready.garconPort = 8891
        let otherPort = await #expect(throws: RPCError.self) {
            try await self.listener("vm1") { _ = try await $0.containerReady(ready) }
        }
        #expect(otherPort?.code == .invalidArgument, "a port other than the one given is refused")
        ready.garconPort = 8890
        try await listener("vm1") { _ = try await $0.containerReady(ready) }
        let vm = try #require(await manager.vms["vm1"]?.vm)
        await manager.stopAll()

        // The next cicerone; maitred cannot be asked here (no guest), so the records stand.
        let log = EventLog()
        let next = try CiceroneManager(
            configuration: await manager.configuration, directory: RunningVMs(vms: [vm]),
            events: { log.append($0) }, log: { _ in })
        await next.resume()
        #expect(await next.list(vm: "vm1").isEmpty, "not created in this test's state, only running")
        #expect(await next.running[a.key]?.garconPort == 8890)
        #expect(await next.running[a.key]?.ready == true)
        var update = Vmtools_Container_UpdateApplicationListRequest()
        update.token = a.token
        try await listener("vm1") { _ = try await $0.updateApplicationList(update) }
        #expect(log.all == [.applicationsChanged(a.key, count: 0)])
        var info = stat()
        #expect(
            stat("\(base)/run/running.json", &info) == 0 && info.st_mode & 0o777 == 0o600, "the tokens are root's alone"
        )
        await next.stopAll()
    }
}

extension CiceroneBusTests {
    @Test(
        "the same VM told of several times at once (concierge's notice and a client's lookup race) gets one working listener"
    )
    func concurrentNotices() async throws {
        try FileManager.default.createDirectory(atPath: "\(base)/vm1", withIntermediateDirectories: true)
        let vm = GuestVM(
            name: "vm1", cid: 7, vsockSocket: "\(base)/vm1/vsock.sock", maitredSocket: "\(base)/vm1/maitred.sock")
        let manager = self.manager
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<8 { group.addTask { try? await manager.vmStarted(vm) } }
        }
        let a = await running("vm1", "penguin")
        var ready = Vmtools_Container_ContainerReadyRequest()
        ready.token = a.token
        ready.garconPort = 8890
        try await listener("vm1") { _ = try await $0.containerReady(ready) }
        #expect(events.all == [.started(a.key)])
    }
}
