import DBus
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A real `dbus-daemon` on a Unix socket in a private directory, session-like and allowing
/// everything, started with `--print-address --nofork`.
///
/// Children started from a Swift concurrency thread inherit its signal mask, in which SIGTERM
/// is blocked, so the daemon (and a hung busctl) is ended with SIGKILL.
final class PrivateBus: @unchecked Sendable {
    let directory: String
    let address: String
    private let process: Process
    private let exited = Gate()

    init() async throws {
        var template = Array("/tmp/dbus-test.XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw TestFailure("mkdtemp failed") }
        directory = String(cString: made)
        let config = """
            <!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
             "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
            <busconfig>
              <type>session</type>
              <listen>unix:path=\(directory)/bus</listen>
              <auth>EXTERNAL</auth>
              <policy context="default">
                <allow send_destination="*" eavesdrop="true"/>
                <allow eavesdrop="true"/>
                <allow own="*"/>
                <allow user="*"/>
              </policy>
            </busconfig>
            """
        try config.write(toFile: "\(directory)/bus.conf", atomically: true, encoding: .utf8)
        // Anyone may connect (the uid test calls as another user).
        chmod(directory, 0o755)

        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/dbus-daemon")
        process.arguments = ["--config-file=\(directory)/bus.conf", "--print-address", "--nofork"]
        let output = Pipe()
        process.standardOutput = output
        process.terminationHandler = { [exited] _ in exited.open() }
        try process.run()

        // The first line is the address; wait at most 10 s for it.
        let reader = output.fileHandleForReading
        let line = LineBox()
        let thread = Thread {
            var bytes = Data()
            while !bytes.contains(UInt8(ascii: "\n")) {
                let chunk = reader.availableData
                if chunk.isEmpty { break }
                bytes.append(chunk)
            }
            line.set(String(decoding: bytes, as: UTF8.self))
        }
        thread.start()
        let deadline = Date().addingTimeInterval(10)
        while line.get() == nil && Date() < deadline { try await Task.sleep(for: .milliseconds(10)) }
        guard let printed = line.get()?.split(separator: "\n").first, printed.hasPrefix("unix:") else {
            kill(process.processIdentifier, SIGKILL)
            try? FileManager.default.removeItem(atPath: directory)
            throw TestFailure("dbus-daemon printed no address")
        }
        address = String(printed)
    }

    /// Kills the daemon, waits at most 10 s for it to exit, and removes its directory.
    func stop() async throws {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        let ended = await exited.wait(seconds: 10)
        try? FileManager.default.removeItem(atPath: directory)
        guard ended else { throw TestFailure("dbus-daemon \(process.processIdentifier) did not exit") }
    }

    /// A new connection to this bus.
    func connect() async throws -> DBusConnection { try await DBusConnection.open(.address(address)) }

    /// Runs `busctl --address=<bus> arguments` (as `user` when given, through setpriv), at most
    /// 20 s; returns its status and output.
    func busctl(_ arguments: [String], asUser user: UInt32? = nil) async throws -> (
        status: Int32, out: String, err: String
    ) {
        let process = Process()
        var command = ["/usr/bin/busctl", "--address=\(address)"] + arguments
        if let user {
            command = ["/usr/bin/setpriv", "--reuid=\(user)", "--regid=\(user)", "--clear-groups"] + command
        }
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        let (out, err) = (Pipe(), Pipe())
        process.standardOutput = out
        process.standardError = err
        let finished = Gate()
        process.terminationHandler = { _ in finished.open() }
        try process.run()
        let inTime = await finished.wait(seconds: 20)
        if !inTime {
            kill(process.processIdentifier, SIGKILL)
            throw TestFailure("busctl \(arguments.joined(separator: " ")) hung")
        }
        let stdout = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        return (process.terminationStatus, stdout, stderr)
    }
}

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

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

private final class LineBox: @unchecked Sendable {
    private let lock = NSLock()
    private var value: String?
    func set(_ line: String) { lock.withLock { value = line } }
    func get() -> String? { lock.withLock { value } }
}

/// A one-shot gate a thread opens and a task awaits with a bound.
final class Gate: @unchecked Sendable {
    private let lock = NSLock()
    private var isOpen = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func open() {
        let pending = lock.withLock {
            isOpen = true
            defer { waiters.removeAll() }
            return waiters
        }
        for waiter in pending { waiter.resume() }
    }

    /// Whether the gate is open now.
    var opened: Bool { lock.withLock { isOpen } }

    private func releaseWaiters() {
        let pending = lock.withLock {
            defer { waiters.removeAll() }
            return waiters
        }
        for waiter in pending { waiter.resume() }
    }

    /// True if the gate opened within `seconds` (one waiter at a time).
    func wait(seconds: Double) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await withCheckedContinuation { continuation in
                    let already = self.lock.withLock {
                        if self.isOpen { return true }
                        self.waiters.append(continuation)
                        return false
                    }
                    if already { continuation.resume() }
                }
                return true
            }
            group.addTask {
                try? await Task.sleep(for: .seconds(seconds))
                return false
            }
            var first = await group.next() ?? false
            if !first { first = self.opened }
            if !first { self.releaseWaiters() }  // let the waiting child end
            group.cancelAll()
            return first
        }
    }
}

/// Runs `body`, failing with a TestFailure if it takes longer than `seconds` (the body is
/// cancelled and left behind, so a hang becomes a failure rather than a stuck test).
func withTimeout<T: Sendable>(
    _ seconds: Double, _ what: String = "operation", _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    let outcome = Outcome<T>()
    let task = Task {
        do {
            outcome.set(.success(try await body()))
        } catch {
            outcome.set(.failure(error))
        }
    }
    guard await outcome.gate.wait(seconds: seconds), let result = outcome.get() else {
        task.cancel()
        throw TestFailure("\(what) did not finish within \(seconds) s")
    }
    return try result.get()
}

private final class Outcome<T: Sendable>: @unchecked Sendable {
    let gate = Gate()
    private let lock = NSLock()
    private var result: Result<T, any Error>?
    func set(_ value: Result<T, any Error>) {
        lock.withLock { result = value }
        gate.open()
    }
    func get() -> Result<T, any Error>? { lock.withLock { result } }
}
