import Foundation
import GuestAgent
import GuestClient
import GuestTransport

#if canImport(Glibc)
    import Glibc
#endif

/// A real maitred (its services and servers, not PID 1) on Unix sockets in a private directory,
/// with a startup listener of its own.
struct TestAgent {
    let directory: String
    var maitred: GuestEndpoint { .socket("\(directory)/maitred.sock") }
    var shell: GuestEndpoint { .socket("\(directory)/shell.sock") }
    var readySocket: String { "\(directory)/ready.sock" }

    /// Runs `body` with an agent serving; stops it afterwards.
    static func with<T: Sendable>(notifyReady: Bool = false, _ body: (TestAgent) async throws -> T) async throws -> T {
        var template = Array("/tmp/maitred-test.XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw TestAgentError.setup("mkdtemp") }
        let agent = TestAgent(directory: String(cString: made))
        defer { _ = try? FileManager.default.removeItem(atPath: agent.directory) }
        var options = MaitredAgent.Options()
        options.listen = .unix("\(agent.directory)/maitred.sock")
        options.shellListen = .unix("\(agent.directory)/shell.sock")
        options.ready = notifyReady ? .unix(agent.readySocket) : nil
        let reaper = try ProcessReaper(scope: .ownChildren)
        let server = Task {
            try await MaitredAgent(options: options, reaper: reaper, asInit: false).run(startedAt: .now)
        }
        defer { server.cancel() }
        if !notifyReady {
            // Wait until both sockets exist.
            for _ in 0..<200
            where access("\(agent.directory)/shell.sock", F_OK) != 0
                || access("\(agent.directory)/maitred.sock", F_OK) != 0
            {
                try await Task.sleep(for: .milliseconds(10))
            }
        }
        return try await body(agent)
    }
}

enum TestAgentError: Error { case setup(String) }
