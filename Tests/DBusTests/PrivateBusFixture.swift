import DBus
import DBusTestSupport
import Foundation
import Testing

/// The suite-level fixture of a suite that talks to a bus (`@Suite(.privateBus)`): one private
/// `dbus-daemon` for the whole suite, stopped when its last test is done, and for each test a
/// service connection exporting ``TestService`` (with its own ``Level``) and a client
/// connection, closed within 10 s when the test ends. Tests share only the daemon, so they may
/// run in parallel.
struct PrivateBusFixture: SuiteTrait, TestTrait, TestScoping {
    /// What one test gets.
    struct Connections: Sendable {
        let bus: PrivateBus
        /// The connection exporting the test object.
        let service: DBusConnection
        /// The calling connection.
        let client: DBusConnection
        /// The state behind the exported `Level` property.
        let level: Level
    }

    /// The suite's daemon, while the suite runs.
    @TaskLocal static var bus: PrivateBus?
    /// The running test's connections (read them in the suite's `init`).
    @TaskLocal static var connections: Connections?

    /// Applies to the suite's tests too, for their connections (a recursive suite trait must
    /// also be a TestTrait: swiftlang/swift-testing#1048).
    var isRecursive: Bool { true }

    /// The suite itself (the daemon) and each of its test cases (the connections).
    func scopeProvider(for test: Test, testCase: Test.Case?) -> Self? {
        test.isSuite || testCase != nil ? self : nil
    }

    func provideScope(
        for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
    ) async throws {
        guard testCase != nil else {
            // The suite: its daemon.
            let bus = try await PrivateBus()
            do {
                try await Self.$bus.withValue(bus) { try await function() }
            } catch {
                try? await bus.stop()
                throw error
            }
            try await bus.stop()
            return
        }
        // One test case: its connections on the suite's daemon.
        guard let bus = Self.bus else { throw TestFailure("dbus-daemon did not start") }
        let level = Level()
        let service = try await withTimeout(10, "connecting") { try await bus.connect() }
        let client = try await withTimeout(10, "connecting") { try await bus.connect() }
        let close = {
            try await withTimeout(10, "closing") {
                await client.close()
                await service.close()
            }
        }
        do {
            _ = try await withTimeout(10, "exporting") {
                try await service.export(TestService.interface(level: level), at: TestService.path)
            }
            let connections = Connections(bus: bus, service: service, client: client, level: level)
            try await Self.$connections.withValue(connections) { try await function() }
        } catch {
            // The test's own failure is the one thrown; a hang in closing is recorded beside it.
            do { try await close() } catch let closing { Issue.record(closing) }
            throw error
        }
        try await close()
    }
}

extension Trait where Self == PrivateBusFixture {
    /// A private `dbus-daemon` for the suite, and fresh connections for each test.
    static var privateBus: Self { Self() }
}
