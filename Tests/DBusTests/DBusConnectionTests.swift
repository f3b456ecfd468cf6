import DBus
import DBusTestSupport
import Foundation
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The binding against a real private dbus-daemon: a service connection exporting
/// ``TestService`` and a client connection, driven from Swift and from `busctl`. The daemon is
/// the suite's; every test has connections (and a `Level`) of its own, so they run in parallel.
@Suite(.privateBus)
struct DBusConnectionTests {
    /// The suite's private bus.
    let bus: PrivateBus
    /// The connection exporting the test object.
    let service: DBusConnection
    /// The calling connection.
    let client: DBusConnection
    /// The state behind the exported `Level` property.
    let level: Level

    init() throws {
        guard let connections = PrivateBusFixture.connections else {
            throw TestFailure("no connections: the suite needs the .privateBus trait")
        }
        bus = connections.bus
        service = connections.service
        client = connections.client
        level = connections.level
    }

    /// Calls `member` of the test object on the service's unique name.
    func call(_ member: String, _ arguments: [DBusValue] = [], timeout: Duration = .seconds(10)) async throws
        -> [DBusValue]
    {
        let destination = service.uniqueName
        return try await withTimeout(15, member) {
            try await client.call(
                destination: destination, path: TestService.path, interface: TestService.name, member: member,
                arguments, timeout: timeout)
        }
    }

    /// Calls `member`, which must fail with the error `name`; returns that error.
    func expectError(
        _ name: String, _ member: String, _ arguments: [DBusValue] = [],
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws -> DBusError {
        do {
            let reply = try await call(member, arguments)
            Issue.record("\(member) answered \(reply), expected \(name)", sourceLocation: sourceLocation)
            throw TestFailure("no error")
        } catch let error as DBusError {
            #expect(error.name == name, "\(error)", sourceLocation: sourceLocation)
            return error
        }
    }

    // MARK: - Marshalling

    @Test func everyTypeRoundTripsThroughTheBus() async throws {
        let values: [DBusValue] = [
            .byte(0xfe), .bool(true), .bool(false), .int16(-3), .uint16(65535), .int32(Int32.min),
            .uint32(UInt32.max), .int64(Int64.min), .uint64(UInt64.max), .double(-2.5), .string("héllo wörld"),
            .string(""), .objectPath("/org/vmtools/Concierge"), .signature("a{sv}"),
            .array(element: "i", []), .array(element: "s", [.string("a"), .string("b")]),
            .array(element: "ai", [.array(element: "i", [.int32(1), .int32(2)]), .array(element: "i", [])]),
            .array(element: "y", [.byte(0), .byte(255)]),
            .dictionary(key: "s", value: "v", []),
            .options(["kernel": .string("/vmlinuz"), "memory_mib": .uint32(512), "nested": .options(["x": .int64(-1)])]
            ),
            .dictionary(
                key: "i", value: "a{sb}",
                [
                    DBusDictEntry(
                        key: .int32(7),
                        value: .dictionary(
                            key: "s", value: "b", [DBusDictEntry(key: .string("on"), value: .bool(true))]))
                ]),
            .structure([.string("vm"), .uint32(3), .structure([.double(1.5), .variant(.byte(9))])]),
            .array(
                element: "(su)", [.structure([.string("a"), .uint32(1)]), .structure([.string("b"), .uint32(2)])]),
            .variant(.variant(.string("deep"))),
        ]
        for value in values {
            let reply = try await call("Echo", [.variant(value)])
            #expect(reply == [.variant(value)], "round trip of \(value.signature)")
        }
        let basics: [DBusValue] = [
            .byte(1), .bool(true), .int16(-2), .uint16(3), .int32(-4), .uint32(5), .int64(-6), .uint64(7),
            .double(8.25), .string("nine"), .objectPath("/ten"), .signature("(ii)"),
        ]
        let reply = try await call("EchoBasics", basics)
        #expect(reply == basics)
        #expect(DBusValue.signature(of: reply) == "ybnqiuxtdsog")
    }

    @Test func aMismatchedArrayIsRefusedBeforeSending() async throws {
        let error = try await expectError(
            DBusError.invalidArgsName, "Echo", [.variant(.array(element: "i", [.int32(1), .string("x")]))])
        #expect(error.message.contains("array of i holds a s value"), "\(error.message)")
    }

    // MARK: - Serving methods

    @Test func optionsAreReadTypedWithClearErrors() async throws {
        let ok = try await call(
            "StartVm", [.string("demo"), .options(["kernel": .string("/k"), "memory_mib": .uint32(512)])])
        #expect(ok == [.uint32(512)])
        let defaulted = try await call("StartVm", [.string("demo"), .options(["kernel": .string("/k")])])
        #expect(defaulted == [.uint32(1024)])
        let mistyped = try await expectError(
            DBusError.invalidArgsName, "StartVm",
            [.string("demo"), .options(["kernel": .string("/k"), "memory_mib": .string("512")])])
        #expect(mistyped.message == "option memory_mib must be u, got s")
        let missing = try await expectError(DBusError.invalidArgsName, "StartVm", [.string("demo"), .options([:])])
        #expect(missing.message == "missing option kernel")
        let unknown = try await expectError(
            DBusError.invalidArgsName, "StartVm",
            [.string("demo"), .options(["kernel": .string("/k"), "cpus": .uint32(2)])])
        #expect(unknown.message == "unknown option cpus")
    }

    @Test func aThrownDBusErrorReachesTheCallerByNameAndMessage() async throws {
        let error = try await expectError("org.vmtools.Error.NotFound", "Fail", [.string("demo")])
        #expect(error.message == "no VM named demo")
        let plain = try await expectError(DBusError.failedName, "FailPlain")
        #expect(plain.message.contains("a plain Swift error"), "\(plain.message)")
        let bad = try await expectError(DBusError.failedName, "BadReply")
        #expect(bad.message.contains("expected 'u'"), "\(bad.message)")
    }

    @Test func aWrongSignatureIsInvalidArgsAndTheServiceGoesOn() async throws {
        _ = try await expectError(DBusError.invalidArgsName, "Add", [.string("one"), .int32(2)])
        _ = try await expectError(DBusError.invalidArgsName, "Add", [.int32(1)])
        _ = try await expectError(DBusError.invalidArgsName, "Add")
        let sum = try await call("Add", [.int32(40), .int32(2)])
        #expect(sum == [.int32(42)])
        let result = try await bus.busctl(
            ["call", service.uniqueName, TestService.path, TestService.name, "Add", "s", "nope"])
        #expect(result.status != 0)
        #expect(result.err.contains("Invalid arguments"), "\(result.err)")
    }

    @Test func anUnknownMethodIsAnError() async throws {
        _ = try await expectError("org.freedesktop.DBus.Error.UnknownMethod", "NoSuchMethod")
    }

    @Test func slowHandlersDoNotHoldUpOtherCalls() async throws {
        let clock = ContinuousClock()
        let slowDone = Gate()
        let slow = Task {
            defer { slowDone.open() }
            return try await self.call("Slow", [.uint32(3000)])
        }
        // While Slow sleeps, other calls are answered (and the slow one is still pending).
        for i in 0..<10 {
            let sum = try await call("Add", [.int32(Int32(i)), .int32(1)])
            #expect(sum == [.int32(Int32(i) + 1)])
        }
        #expect(!slowDone.opened, "the fast calls waited for the slow one")
        let slowReply = try await slow.value
        #expect(slowReply == [.uint32(3000)])
        // Many concurrent slow calls overlap rather than queue (one after another takes 10 s).
        let manyStart = clock.now
        try await withThrowingTaskGroup(of: [DBusValue].self) { group in
            for _ in 0..<10 { group.addTask { try await self.call("Slow", [.uint32(1000)]) } }
            for try await reply in group { #expect(reply == [.uint32(1000)]) }
        }
        #expect(clock.now - manyStart < .seconds(8), "concurrent slow calls ran one after another")
    }

    @Test func theCallTimeoutIsHonoured() async throws {
        do {
            _ = try await call("Never", [], timeout: .milliseconds(300))
            Issue.record("Never answered")
        } catch let error as DBusError {
            #expect([DBusError.timeoutName, DBusError.noReplyName].contains(error.name), "\(error)")
        }
    }

    @Test func theSenderUidAndNameAreReported() async throws {
        let reply = try await call("WhoAmI")
        #expect(reply == [.uint32(getuid()), .string(client.uniqueName)])
        // Another user, through busctl: the bus reports that uid (switching users needs root).
        guard getuid() == 0 else { return }
        let nobody: UInt32 = 65534
        let result = try await bus.busctl(
            ["call", service.uniqueName, TestService.path, TestService.name, "WhoAmI"], asUser: nobody)
        #expect(result.status == 0, "\(result.err)")
        #expect(result.out.hasPrefix("us \(nobody) \":1."), "\(result.out)")
    }

    @Test func aDescriptorPassesBothWays() async throws {
        // Server → client: a pipe's read end with the text already in it.
        let reply = try await call("MakePipe", [.string("from the service")])
        guard case .fd(let readEnd) = reply.first else {
            Issue.record("no fd in \(reply)")
            return
        }
        var buffer = [UInt8](repeating: 0, count: 64)
        let n = read(readEnd.fd, &buffer, buffer.count)
        #expect(String(decoding: buffer.prefix(max(n, 0)), as: UTF8.self) == "from the service")

        // Client → server: the service writes into our pipe's write end.
        var fds: [Int32] = [0, 0]
        let piped = pipe(&fds)
        #expect(piped == 0)
        defer { close(fds[0]) }
        let writeEnd = DBusFileDescriptor(taking: fds[1])
        _ = try await call("WriteTo", [.fd(writeEnd), .string("from the client")])
        let m = read(fds[0], &buffer, buffer.count)
        #expect(String(decoding: buffer.prefix(max(m, 0)), as: UTF8.self) == "from the client")
    }

    @Test func callingByWellKnownName() async throws {
        try await withTimeout(10) { try await self.service.requestName(TestService.name) }
        let reply = try await withTimeout(10) {
            try await self.client.call(service: TestService.name, member: "Add", [.int32(1), .int32(2)])
        }
        #expect(reply == [.int32(3)])
        // The name is taken: a second owner is refused.
        do {
            try await withTimeout(10) { try await self.client.requestName(TestService.name) }
            Issue.record("a second connection got \(TestService.name)")
        } catch let error as DBusError {
            #expect(error.message.contains("owned by another connection"), "\(error)")
        }
    }

    // MARK: - busctl

    @Test func busctlCallsIntrospectsAndUsesProperties() async throws {
        let name = service.uniqueName
        let add = try await bus.busctl(["call", name, TestService.path, TestService.name, "Add", "ii", "40", "2"])
        #expect(add.status == 0, "\(add.err)")
        #expect(add.out.trimmingCharacters(in: .whitespacesAndNewlines) == "i 42")

        let options = try await bus.busctl([
            "call", name, TestService.path, TestService.name, "StartVm", "sa{sv}", "demo", "2", "kernel", "s",
            "/vmlinuz",
            "memory_mib", "u", "512",
        ])
        #expect(options.status == 0, "\(options.err)")
        #expect(options.out.trimmingCharacters(in: .whitespacesAndNewlines) == "u 512")

        let failed = try await bus.busctl(["call", name, TestService.path, TestService.name, "Fail", "s", "x"])
        #expect(failed.status != 0)
        #expect(failed.err.contains("no VM named x"), "\(failed.err)")

        let introspect = try await bus.busctl(["introspect", name, TestService.path, TestService.name])
        #expect(introspect.status == 0, "\(introspect.err)")
        let lines = introspect.out.split(separator: "\n").map {
            $0.split(separator: " ", omittingEmptySubsequences: true)
        }
        func row(_ member: String) -> [Substring]? { lines.first { $0.first.map(String.init) == member } }
        #expect(row(".Add").map { Array($0.prefix(4)) } == [".Add", "method", "ii", "i"], "\(introspect.out)")
        #expect(
            row(".Name").map { Array($0.prefix(4)) } == [".Name", "property", "s", "\"demo\""], "\(introspect.out)")
        #expect(row(".Level").map { Array($0.prefix(3)) } == [".Level", "property", "u"], "\(introspect.out)")
        #expect(row(".Level")?.contains("writable") == true, "\(introspect.out)")
        #expect(row(".Tick").map { Array($0.prefix(3)) } == [".Tick", "signal", "u"], "\(introspect.out)")
        #expect(row(".Changed").map { Array($0.prefix(3)) } == [".Changed", "signal", "su"], "\(introspect.out)")

        // The XML carries argument names.
        let xml = try await bus.busctl(["introspect", "--xml-interface", name, TestService.path])
        #expect(xml.out.contains("<arg type=\"i\" name=\"sum\" direction=\"out\"/>"), "\(xml.out)")

        let get = try await bus.busctl(["get-property", name, TestService.path, TestService.name, "Name"])
        #expect(get.out.trimmingCharacters(in: .whitespacesAndNewlines) == "s \"demo\"", "\(get.err)")
        let set = try await bus.busctl(["set-property", name, TestService.path, TestService.name, "Level", "u", "7"])
        #expect(set.status == 0, "\(set.err)")
        #expect(level.value.withLock { $0 } == 7)
        let level = try await bus.busctl(["get-property", name, TestService.path, TestService.name, "Level"])
        #expect(level.out.trimmingCharacters(in: .whitespacesAndNewlines) == "u 7", "\(level.err)")
        let refused = try await bus.busctl([
            "set-property", name, TestService.path, TestService.name, "Level", "u", "700",
        ])
        #expect(refused.status != 0)
        #expect(refused.err.contains("at most 100"), "\(refused.err)")
        let readOnly = try await bus.busctl([
            "set-property", name, TestService.path, TestService.name, "Name", "s", "x",
        ])
        #expect(readOnly.status != 0)
    }

    @Test func propertiesThroughTheSwiftClient() async throws {
        let properties = "org.freedesktop.DBus.Properties"
        let destination = service.uniqueName
        let got = try await withTimeout(10) {
            try await client.call(
                destination: destination, path: TestService.path, interface: properties, member: "Get",
                [.string(TestService.name), .string("Level")])
        }
        #expect(got == [.variant(.uint32(3))])
        let all = try await withTimeout(10) {
            try await client.call(
                destination: destination, path: TestService.path, interface: properties, member: "GetAll",
                [.string(TestService.name)])
        }
        let values = try DBusOptions(try #require(all.first))
        #expect(values["Name"] == .string("demo"))
        #expect(values["Level"] == .uint32(3))
    }

    // MARK: - Signals

    @Test func signalsReachASubscriber() async throws {
        let rule = DBusMatchRule(sender: service.uniqueName, interface: TestService.name, member: "Tick")
        let stream = try await withTimeout(10) { [client] in try await client.signals(rule) }
        // Emitted from a plain thread, not a task.
        Thread.detachNewThread { [service] in
            Task {
                for i in 1...5 {
                    try await service.emitSignal(
                        path: TestService.path, interface: TestService.name, member: "Tick", [.uint32(UInt32(i))])
                }
            }
        }
        let received = try await withTimeout(10, "receiving signals") {
            var counts: [UInt32] = []
            for await signal in stream {
                #expect(signal.path == TestService.path)
                #expect(signal.member == "Tick")
                counts.append(try signal.argument(0, as: UInt32.self))
                if counts.count == 5 { break }
            }
            return counts
        }
        #expect(received == [1, 2, 3, 4, 5])
    }

    @Test func settingAPropertyEmitsPropertiesChanged() async throws {
        let rule = DBusMatchRule(
            sender: service.uniqueName, path: TestService.path, interface: "org.freedesktop.DBus.Properties",
            member: "PropertiesChanged")
        let stream = try await withTimeout(10) { [client] in try await client.signals(rule) }
        let set = try await bus.busctl([
            "set-property", service.uniqueName, TestService.path, TestService.name, "Level", "u", "9",
        ])
        #expect(set.status == 0, "\(set.err)")
        let changed = try await withTimeout(10, "PropertiesChanged") { () -> DBusSignal? in
            for await signal in stream { return signal }
            return nil
        }
        let signal = try #require(changed)
        #expect(signal.arguments.first == .string(TestService.name))
        #expect(try DBusOptions(signal.arguments[1])["Level"] == .uint32(9))

        // An explicit emission carries the getter's current value.
        level.value.withLock { $0 = 11 }
        try await withTimeout(10) { [service] in
            try await service.emitPropertiesChanged(path: TestService.path, interface: TestService.name, ["Level"])
        }
        let again = try await withTimeout(10, "PropertiesChanged") { () -> DBusSignal? in
            for await signal in stream { return signal }
            return nil
        }
        let signalAgain = try #require(again)
        #expect(try DBusOptions(signalAgain.arguments[1])["Level"] == .uint32(11))
    }

    // MARK: - Closing

    @Test func closingTheClientEndsAPendingCallWithAnError() async throws {
        let destination = service.uniqueName
        let pending = Task {
            try await client.call(
                destination: destination, path: TestService.path, interface: TestService.name, member: "Never",
                timeout: .seconds(120))
        }
        try await Task.sleep(for: .milliseconds(200))
        try await withTimeout(10, "closing") { await client.close() }
        do {
            let reply = try await withTimeout(10, "the pending call") { try await pending.value }
            Issue.record("Never answered \(reply)")
        } catch let error as DBusError {
            #expect(error.name == DBusError.disconnectedName)
        }
        #expect(client.isClosed)
        // Calls after close fail at once.
        do {
            _ = try await withTimeout(10) { try await client.call(service: TestService.name, member: "Add") }
            Issue.record("a closed connection made a call")
        } catch let error as DBusError {
            #expect(error.name == DBusError.disconnectedName)
        }
    }

    @Test func closingTheServiceAnswersItsPendingCalls() async throws {
        let destination = service.uniqueName
        let pending = Task {
            try await client.call(
                destination: destination, path: TestService.path, interface: TestService.name, member: "Never",
                timeout: .seconds(120))
        }
        try await Task.sleep(for: .milliseconds(300))
        try await withTimeout(10, "closing") { await service.close() }
        do {
            let reply = try await withTimeout(10, "the pending call") { try await pending.value }
            Issue.record("Never answered \(reply)")
        } catch let error as DBusError {
            #expect(error.name == DBusError.failedName, "\(error)")
            #expect(error.message.contains("closed its D-Bus connection"), "\(error.message)")
        }
    }

    @Test func cancellingACallingTaskEndsTheCall() async throws {
        let destination = service.uniqueName
        let pending = Task {
            try await client.call(
                destination: destination, path: TestService.path, interface: TestService.name, member: "Never",
                timeout: .seconds(120))
        }
        try await Task.sleep(for: .milliseconds(200))
        pending.cancel()
        do {
            _ = try await withTimeout(10, "the cancelled call") { try await pending.value }
            Issue.record("a cancelled call returned")
        } catch let error as DBusError {
            #expect(error.message.contains("cancelled"), "\(error)")
        }
        // The connection still works.
        let sum = try await call("Add", [.int32(2), .int32(2)])
        #expect(sum == [.int32(4)])
    }

    @Test func openingABadAddressFails() async throws {
        do {
            _ = try await withTimeout(10) { try await DBusConnection.open(.address("unix:path=/nonexistent/bus")) }
            Issue.record("connected to nothing")
        } catch let error as DBusError {
            #expect(error.name == DBusError.failedName)
        }
    }
}
