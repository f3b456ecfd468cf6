import DBus
import Foundation
import Synchronization
import XCTest

#if canImport(Glibc)
    import Glibc
#endif

/// The binding against a real private dbus-daemon: a service connection exporting
/// ``TestService`` and a client connection, driven from Swift and from `busctl`.
final class DBusConnectionTests: XCTestCase, @unchecked Sendable {
    nonisolated(unsafe) static var privateBus: PrivateBus?
    private var fixture: (bus: PrivateBus, service: DBusConnection, client: DBusConnection)?
    /// The private bus; throws (failing the test) when setUp could not start it.
    var bus: PrivateBus { get throws { try XCTUnwrap(fixture?.bus, "no bus") } }
    /// The connection exporting the test object.
    var service: DBusConnection { get throws { try XCTUnwrap(fixture?.service, "no service connection") } }
    /// The calling connection.
    var client: DBusConnection { get throws { try XCTUnwrap(fixture?.client, "no client connection") } }
    let level = Level()

    override class func setUp() {
        super.setUp()
        privateBus = try? PrivateBus()
    }

    override class func tearDown() {
        privateBus?.stop()
        privateBus = nil
        super.tearDown()
    }

    override func setUp() async throws {
        let bus = try XCTUnwrap(Self.privateBus, "dbus-daemon did not start")
        let level = self.level
        let service = try await withTimeout(10, "connecting") { try await bus.connect() }
        let client = try await withTimeout(10, "connecting") { try await bus.connect() }
        fixture = (bus, service, client)
        _ = try await withTimeout(10, "exporting") {
            try await service.export(TestService.interface(level: level), at: TestService.path)
        }
    }

    override func tearDown() async throws {
        guard let (_, service, client) = fixture else { return }
        try await withTimeout(10, "closing") {
            await client.close()
            await service.close()
        }
    }

    /// Calls `member` of the test object on the service's unique name.
    func call(_ member: String, _ arguments: [DBusValue] = [], timeout: Duration = .seconds(10)) async throws
        -> [DBusValue]
    {
        let (client, destination) = (try client, try service.uniqueName)
        return try await withTimeout(15, member) {
            try await client.call(
                destination: destination, path: TestService.path, interface: TestService.name, member: member,
                arguments, timeout: timeout)
        }
    }

    func expectError(_ name: String, _ member: String, _ arguments: [DBusValue] = []) async throws -> DBusError {
        do {
            let reply = try await call(member, arguments)
            XCTFail("\(member) answered \(reply), expected \(name)")
            throw TestFailure("no error")
        } catch let error as DBusError {
            XCTAssertEqual(error.name, name, "\(error)")
            return error
        }
    }

    // MARK: - Marshalling

    func testEveryTypeRoundTripsThroughTheBus() async throws {
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
            XCTAssertEqual(reply, [.variant(value)], "round trip of \(value.signature)")
        }
        let basics: [DBusValue] = [
            .byte(1), .bool(true), .int16(-2), .uint16(3), .int32(-4), .uint32(5), .int64(-6), .uint64(7),
            .double(8.25), .string("nine"), .objectPath("/ten"), .signature("(ii)"),
        ]
        let reply = try await call("EchoBasics", basics)
        XCTAssertEqual(reply, basics)
        XCTAssertEqual(DBusValue.signature(of: reply), "ybnqiuxtdsog")
    }

    func testAMismatchedArrayIsRefusedBeforeSending() async throws {
        let error = try await expectError(
            DBusError.invalidArgsName, "Echo", [.variant(.array(element: "i", [.int32(1), .string("x")]))])
        XCTAssertTrue(error.message.contains("array of i holds a s value"), error.message)
    }

    // MARK: - Serving methods

    func testOptionsAreReadTypedWithClearErrors() async throws {
        let ok = try await call(
            "StartVm", [.string("demo"), .options(["kernel": .string("/k"), "memory_mib": .uint32(512)])])
        XCTAssertEqual(ok, [.uint32(512)])
        let defaulted = try await call("StartVm", [.string("demo"), .options(["kernel": .string("/k")])])
        XCTAssertEqual(defaulted, [.uint32(1024)])
        let mistyped = try await expectError(
            DBusError.invalidArgsName, "StartVm",
            [.string("demo"), .options(["kernel": .string("/k"), "memory_mib": .string("512")])])
        XCTAssertEqual(mistyped.message, "option memory_mib must be u, got s")
        let missing = try await expectError(DBusError.invalidArgsName, "StartVm", [.string("demo"), .options([:])])
        XCTAssertEqual(missing.message, "missing option kernel")
        let unknown = try await expectError(
            DBusError.invalidArgsName, "StartVm",
            [.string("demo"), .options(["kernel": .string("/k"), "cpus": .uint32(2)])])
        XCTAssertEqual(unknown.message, "unknown option cpus")
    }

    func testAThrownDBusErrorReachesTheCallerByNameAndMessage() async throws {
        let error = try await expectError("org.vmtools.Error.NotFound", "Fail", [.string("demo")])
        XCTAssertEqual(error.message, "no VM named demo")
        let plain = try await expectError(DBusError.failedName, "FailPlain")
        XCTAssertTrue(plain.message.contains("a plain Swift error"), plain.message)
        let bad = try await expectError(DBusError.failedName, "BadReply")
        XCTAssertTrue(bad.message.contains("expected 'u'"), bad.message)
    }

    func testAWrongSignatureIsInvalidArgsAndTheServiceGoesOn() async throws {
        _ = try await expectError(DBusError.invalidArgsName, "Add", [.string("one"), .int32(2)])
        _ = try await expectError(DBusError.invalidArgsName, "Add", [.int32(1)])
        _ = try await expectError(DBusError.invalidArgsName, "Add")
        let sum = try await call("Add", [.int32(40), .int32(2)])
        XCTAssertEqual(sum, [.int32(42)])
        let result = try await bus.busctl(
            ["call", service.uniqueName, TestService.path, TestService.name, "Add", "s", "nope"])
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.err.contains("Invalid arguments"), result.err)
    }

    func testAnUnknownMethodIsAnError() async throws {
        _ = try await expectError("org.freedesktop.DBus.Error.UnknownMethod", "NoSuchMethod")
    }

    func testSlowHandlersDoNotHoldUpOtherCalls() async throws {
        let clock = ContinuousClock()
        let slowDone = Gate()
        let slow = Task {
            defer { slowDone.open() }
            return try await self.call("Slow", [.uint32(3000)])
        }
        // While Slow sleeps, other calls are answered (and the slow one is still pending).
        for i in 0..<10 {
            let sum = try await call("Add", [.int32(Int32(i)), .int32(1)])
            XCTAssertEqual(sum, [.int32(Int32(i) + 1)])
        }
        XCTAssertFalse(slowDone.opened, "the fast calls waited for the slow one")
        let slowReply = try await slow.value
        XCTAssertEqual(slowReply, [.uint32(3000)])
        // Many concurrent slow calls overlap rather than queue (one after another takes 10 s).
        let manyStart = clock.now
        try await withThrowingTaskGroup(of: [DBusValue].self) { group in
            for _ in 0..<10 { group.addTask { try await self.call("Slow", [.uint32(1000)]) } }
            for try await reply in group { XCTAssertEqual(reply, [.uint32(1000)]) }
        }
        XCTAssertLessThan(clock.now - manyStart, .seconds(8), "concurrent slow calls ran one after another")
    }

    func testTheCallTimeoutIsHonoured() async throws {
        do {
            _ = try await call("Never", [], timeout: .milliseconds(300))
            XCTFail("Never answered")
        } catch let error as DBusError {
            XCTAssertTrue(
                [DBusError.timeoutName, DBusError.noReplyName].contains(error.name), "\(error)")
        }
    }

    func testTheSenderUidAndNameAreReported() async throws {
        let reply = try await call("WhoAmI")
        XCTAssertEqual(reply, [.uint32(getuid()), .string(try client.uniqueName)])
        // Another user, through busctl: the bus reports that uid (switching users needs root).
        guard getuid() == 0 else { return }
        let nobody: UInt32 = 65534
        let result = try await bus.busctl(
            ["call", service.uniqueName, TestService.path, TestService.name, "WhoAmI"], asUser: nobody)
        XCTAssertEqual(result.status, 0, result.err)
        XCTAssertTrue(result.out.hasPrefix("us \(nobody) \":1."), result.out)
    }

    func testADescriptorPassesBothWays() async throws {
        // Server → client: a pipe's read end with the text already in it.
        let reply = try await call("MakePipe", [.string("from the service")])
        guard case .fd(let readEnd) = reply.first else { return XCTFail("no fd in \(reply)") }
        var buffer = [UInt8](repeating: 0, count: 64)
        let n = read(readEnd.fd, &buffer, buffer.count)
        XCTAssertEqual(String(decoding: buffer.prefix(max(n, 0)), as: UTF8.self), "from the service")

        // Client → server: the service writes into our pipe's write end.
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        defer { close(fds[0]) }
        let writeEnd = DBusFileDescriptor(taking: fds[1])
        _ = try await call("WriteTo", [.fd(writeEnd), .string("from the client")])
        let m = read(fds[0], &buffer, buffer.count)
        XCTAssertEqual(String(decoding: buffer.prefix(max(m, 0)), as: UTF8.self), "from the client")
    }

    func testCallingByWellKnownName() async throws {
        try await withTimeout(10) { try await self.service.requestName(TestService.name) }
        let reply = try await withTimeout(10) {
            try await self.client.call(service: TestService.name, member: "Add", [.int32(1), .int32(2)])
        }
        XCTAssertEqual(reply, [.int32(3)])
        // The name is taken: a second owner is refused.
        do {
            try await withTimeout(10) { try await self.client.requestName(TestService.name) }
            XCTFail("a second connection got \(TestService.name)")
        } catch let error as DBusError {
            XCTAssertTrue(error.message.contains("owned by another connection"), "\(error)")
        }
    }

    // MARK: - busctl

    func testBusctlCallsIntrospectsAndUsesProperties() async throws {
        let name = try service.uniqueName
        let add = try await bus.busctl(["call", name, TestService.path, TestService.name, "Add", "ii", "40", "2"])
        XCTAssertEqual(add.status, 0, add.err)
        XCTAssertEqual(add.out.trimmingCharacters(in: .whitespacesAndNewlines), "i 42")

        let options = try await bus.busctl([
            "call", name, TestService.path, TestService.name, "StartVm", "sa{sv}", "demo", "2", "kernel", "s",
            "/vmlinuz",
            "memory_mib", "u", "512",
        ])
        XCTAssertEqual(options.status, 0, options.err)
        XCTAssertEqual(options.out.trimmingCharacters(in: .whitespacesAndNewlines), "u 512")

        let failed = try await bus.busctl(["call", name, TestService.path, TestService.name, "Fail", "s", "x"])
        XCTAssertNotEqual(failed.status, 0)
        XCTAssertTrue(failed.err.contains("no VM named x"), failed.err)

        let introspect = try await bus.busctl(["introspect", name, TestService.path, TestService.name])
        XCTAssertEqual(introspect.status, 0, introspect.err)
        let lines = introspect.out.split(separator: "\n").map {
            $0.split(separator: " ", omittingEmptySubsequences: true)
        }
        func row(_ member: String) -> [Substring]? { lines.first { $0.first.map(String.init) == member } }
        XCTAssertEqual(row(".Add").map { Array($0.prefix(4)) }, [".Add", "method", "ii", "i"], introspect.out)
        XCTAssertEqual(
            row(".Name").map { Array($0.prefix(4)) }, [".Name", "property", "s", "\"demo\""], introspect.out)
        XCTAssertEqual(row(".Level").map { Array($0.prefix(3)) }, [".Level", "property", "u"], introspect.out)
        XCTAssertTrue(row(".Level")?.contains("writable") ?? false, introspect.out)
        XCTAssertEqual(row(".Tick").map { Array($0.prefix(3)) }, [".Tick", "signal", "u"], introspect.out)
        XCTAssertEqual(row(".Changed").map { Array($0.prefix(3)) }, [".Changed", "signal", "su"], introspect.out)

        // The XML carries argument names.
        let xml = try await bus.busctl(["introspect", "--xml-interface", name, TestService.path])
        XCTAssertTrue(xml.out.contains("<arg type=\"i\" name=\"sum\" direction=\"out\"/>"), xml.out)

        let get = try await bus.busctl(["get-property", name, TestService.path, TestService.name, "Name"])
        XCTAssertEqual(get.out.trimmingCharacters(in: .whitespacesAndNewlines), "s \"demo\"", get.err)
        let set = try await bus.busctl(["set-property", name, TestService.path, TestService.name, "Level", "u", "7"])
        XCTAssertEqual(set.status, 0, set.err)
        XCTAssertEqual(level.value.withLock { $0 }, 7)
        let level = try await bus.busctl(["get-property", name, TestService.path, TestService.name, "Level"])
        XCTAssertEqual(level.out.trimmingCharacters(in: .whitespacesAndNewlines), "u 7", level.err)
        let refused = try await bus.busctl([
            "set-property", name, TestService.path, TestService.name, "Level", "u", "700",
        ])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.err.contains("at most 100"), refused.err)
        let readOnly = try await bus.busctl([
            "set-property", name, TestService.path, TestService.name, "Name", "s", "x",
        ])
        XCTAssertNotEqual(readOnly.status, 0)
    }

    func testPropertiesThroughTheSwiftClient() async throws {
        let properties = "org.freedesktop.DBus.Properties"
        let (client, destination) = (try client, try service.uniqueName)
        let got = try await withTimeout(10) {
            try await client.call(
                destination: destination, path: TestService.path, interface: properties, member: "Get",
                [.string(TestService.name), .string("Level")])
        }
        XCTAssertEqual(got, [.variant(.uint32(3))])
        let all = try await withTimeout(10) {
            try await client.call(
                destination: destination, path: TestService.path, interface: properties, member: "GetAll",
                [.string(TestService.name)])
        }
        let values = try DBusOptions(try XCTUnwrap(all.first))
        XCTAssertEqual(values["Name"], .string("demo"))
        XCTAssertEqual(values["Level"], .uint32(3))
    }

    // MARK: - Signals

    func testSignalsReachASubscriber() async throws {
        let rule = DBusMatchRule(sender: try service.uniqueName, interface: TestService.name, member: "Tick")
        let stream = try await withTimeout(10) { [client = try client] in try await client.signals(rule) }
        // Emitted from a plain thread, not a task.
        let service = try self.service
        Thread.detachNewThread {
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
                XCTAssertEqual(signal.path, TestService.path)
                XCTAssertEqual(signal.member, "Tick")
                counts.append(try signal.argument(0, as: UInt32.self))
                if counts.count == 5 { break }
            }
            return counts
        }
        XCTAssertEqual(received, [1, 2, 3, 4, 5])
    }

    func testSettingAPropertyEmitsPropertiesChanged() async throws {
        let rule = DBusMatchRule(
            sender: try service.uniqueName, path: TestService.path, interface: "org.freedesktop.DBus.Properties",
            member: "PropertiesChanged")
        let stream = try await withTimeout(10) { [client = try client] in try await client.signals(rule) }
        let set = try await bus.busctl([
            "set-property", service.uniqueName, TestService.path, TestService.name, "Level", "u", "9",
        ])
        XCTAssertEqual(set.status, 0, set.err)
        let changed = try await withTimeout(10, "PropertiesChanged") { () -> DBusSignal? in
            for await signal in stream { return signal }
            return nil
        }
        let signal = try XCTUnwrap(changed)
        XCTAssertEqual(signal.arguments.first, .string(TestService.name))
        XCTAssertEqual(try DBusOptions(signal.arguments[1])["Level"], .uint32(9))

        // An explicit emission carries the getter's current value.
        level.value.withLock { $0 = 11 }
        try await withTimeout(10) { [service = try service] in
            try await service.emitPropertiesChanged(path: TestService.path, interface: TestService.name, ["Level"])
        }
        let again = try await withTimeout(10, "PropertiesChanged") { () -> DBusSignal? in
            for await signal in stream { return signal }
            return nil
        }
        XCTAssertEqual(try DBusOptions(try XCTUnwrap(again).arguments[1])["Level"], .uint32(11))
    }

    // MARK: - Closing

    func testClosingTheClientEndsAPendingCallWithAnError() async throws {
        let (client, destination) = (try client, try service.uniqueName)
        let pending = Task {
            try await client.call(
                destination: destination, path: TestService.path, interface: TestService.name, member: "Never",
                timeout: .seconds(120))
        }
        try await Task.sleep(for: .milliseconds(200))
        try await withTimeout(10, "closing") { await client.close() }
        do {
            let reply = try await withTimeout(10, "the pending call") { try await pending.value }
            XCTFail("Never answered \(reply)")
        } catch let error as DBusError {
            XCTAssertEqual(error.name, DBusError.disconnectedName)
        }
        XCTAssertTrue(client.isClosed)
        // Calls after close fail at once.
        do {
            _ = try await withTimeout(10) { try await client.call(service: TestService.name, member: "Add") }
            XCTFail("a closed connection made a call")
        } catch let error as DBusError {
            XCTAssertEqual(error.name, DBusError.disconnectedName)
        }
    }

    func testClosingTheServiceAnswersItsPendingCalls() async throws {
        let (client, service, destination) = (try client, try service, try service.uniqueName)
        let pending = Task {
            try await client.call(
                destination: destination, path: TestService.path, interface: TestService.name, member: "Never",
                timeout: .seconds(120))
        }
        try await Task.sleep(for: .milliseconds(300))
        try await withTimeout(10, "closing") { await service.close() }
        do {
            let reply = try await withTimeout(10, "the pending call") { try await pending.value }
            XCTFail("Never answered \(reply)")
        } catch let error as DBusError {
            XCTAssertEqual(error.name, DBusError.failedName, "\(error)")
            XCTAssertTrue(error.message.contains("closed its D-Bus connection"), error.message)
        }
    }

    func testCancellingACallingTaskEndsTheCall() async throws {
        let (client, destination) = (try client, try service.uniqueName)
        let pending = Task {
            try await client.call(
                destination: destination, path: TestService.path, interface: TestService.name, member: "Never",
                timeout: .seconds(120))
        }
        try await Task.sleep(for: .milliseconds(200))
        pending.cancel()
        do {
            _ = try await withTimeout(10, "the cancelled call") { try await pending.value }
            XCTFail("a cancelled call returned")
        } catch let error as DBusError {
            XCTAssertTrue(error.message.contains("cancelled"), "\(error)")
        }
        // The connection still works.
        let sum = try await call("Add", [.int32(2), .int32(2)])
        XCTAssertEqual(sum, [.int32(4)])
    }

    func testOpeningABadAddressFails() async throws {
        do {
            _ = try await withTimeout(10) { try await DBusConnection.open(.address("unix:path=/nonexistent/bus")) }
            XCTFail("connected to nothing")
        } catch let error as DBusError {
            XCTAssertEqual(error.name, DBusError.failedName)
        }
    }
}
