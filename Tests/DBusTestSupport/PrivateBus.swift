import DBus
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A real `dbus-daemon` on a Unix socket in a private directory, session-like and allowing
/// everything, started with `--print-address --nofork`.
///
/// Children started from a Swift concurrency thread inherit its signal mask, in which SIGTERM
/// is blocked, so the daemon (and a hung busctl) is ended with SIGKILL.
public final class PrivateBus: @unchecked Sendable {
    public let directory: String
    public let address: String
    private let process: Process
    private let exited = Gate()

    /// - Parameter policies: bus policy files to include (`dbus/system.d/*.conf`), read after
    ///   the bus's own allow-all policy; dbus-daemon refuses to start on one it rejects.
    public init(policies: [String] = []) async throws {
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
            \(policies.map { "  <include>\($0)</include>" }.joined(separator: "\n"))
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
    public func stop() async throws {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        let ended = await exited.wait(seconds: 10)
        try? FileManager.default.removeItem(atPath: directory)
        guard ended else { throw TestFailure("dbus-daemon \(process.processIdentifier) did not exit") }
    }

    /// Kills the daemon without waiting (for a `deinit`); its directory is removed.
    public func terminate() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// A new connection to this bus.
    public func connect() async throws -> DBusConnection { try await DBusConnection.open(.address(address)) }

    /// Runs `busctl --address=<bus> arguments` (as `user` when given, through setpriv), at most
    /// 20 s; returns its status and output.
    public func busctl(_ arguments: [String], asUser user: UInt32? = nil) async throws -> (
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

public struct TestFailure: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

private final class LineBox: @unchecked Sendable {
    private let lock = NSLock()
    private var value: String?
    func set(_ line: String) { lock.withLock { value = line } }
    func get() -> String? { lock.withLock { value } }
}

/// A one-shot gate a thread opens and a task awaits with a bound.
public final class Gate: @unchecked Sendable {
    public init() {}

    private let lock = NSLock()
    private var isOpen = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    public func open() {
        let pending = lock.withLock {
            isOpen = true
            defer { waiters.removeAll() }
            return waiters
        }
        for waiter in pending { waiter.resume() }
    }

    /// Whether the gate is open now.
    public var opened: Bool { lock.withLock { isOpen } }

    private func releaseWaiters() {
        let pending = lock.withLock {
            defer { waiters.removeAll() }
            return waiters
        }
        for waiter in pending { waiter.resume() }
    }

    /// True if the gate opened within `seconds` (one waiter at a time).
    public func wait(seconds: Double) async -> Bool {
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
public func withTimeout<T: Sendable>(
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

extension PrivateBus {
    /// The `<interface name="NAME">` block that `busctl introspect` shows live at `path`, and the
    /// same block of the committed `dbus/interfaces/NAME.xml` (of the repository holding
    /// `testFile`, a test's `#filePath`), each with its lines' indentation dropped: equal when
    /// the XML is current.
    public func interfaceBlocks(_ name: String, path: String, testFile: String = #filePath) async throws -> (
        exported: String?, committed: String?
    ) {
        let live = try await busctl(["introspect", "--xml-interface", name, path]).out
        let committed = try String(
            contentsOfFile: URL(fileURLWithPath: testFile).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent().appendingPathComponent("dbus/interfaces/\(name).xml").path,
            encoding: .utf8)
        func block(_ xml: String) -> String? {
            guard let start = xml.range(of: "<interface name=\"\(name)\">"),
                let end = xml.range(of: "</interface>", range: start.upperBound..<xml.endIndex)
            else { return nil }
            return xml[start.lowerBound..<end.upperBound].split(separator: "\n")
                .map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: "\n")
        }
        return (block(live), block(committed))
    }
}
