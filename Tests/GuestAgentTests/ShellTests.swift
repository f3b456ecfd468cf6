import Foundation
import GuestClient
import GuestProtocol
import Synchronization
import Testing

/// Shell sessions through the real service: PTYs, pipes, input, resizes and exit statuses.
@Suite struct ShellTests {
    /// Runs a session with the given inputs sent up front; returns its output and exit.
    private func session(
        _ agent: TestAgent, argv: [String], tty: Bool, rows: UInt32 = 0, columns: UInt32 = 0,
        inputs: [ShellClient.Input] = []
    ) async throws -> (stdout: String, stderr: String, exit: ShellClient.Exit) {
        var start = Vmtools_Guest_ShellStart()
        start.argv = argv
        start.tty = tty
        if rows > 0 {
            var size = Vmtools_Guest_WindowSize()
            (size.rows, size.columns) = (rows, columns)
            start.size = size
        }
        let (stream, sink) = AsyncStream.makeStream(of: ShellClient.Input.self)
        for input in inputs { sink.yield(input) }
        let output = Mutex<([UInt8], [UInt8])>(([], []))
        let exit = try await ShellClient.run(agent.shell, start: start, input: stream) { bytes, isError in
            output.withLock { if isError { $0.1 += bytes } else { $0.0 += bytes } }
        }
        sink.finish()
        let (out, err) = output.withLock { $0 }
        return (String(decoding: out, as: UTF8.self), String(decoding: err, as: UTF8.self), exit)
    }

    @Test func pipesKeepStdoutAndStderrApart() async throws {
        try await TestAgent.with { agent in
            let result = try await session(agent, argv: ["sh", "-c", "echo out; echo err >&2; exit 5"], tty: false)
            #expect(result.stdout == "out\n")
            #expect(result.stderr == "err\n")
            #expect(result.exit == .exited(5))
        }
    }

    @Test func inputAndEndOfInputReachTheProcess() async throws {
        try await TestAgent.with { agent in
            let result = try await session(
                agent, argv: ["cat"], tty: false,
                inputs: [.bytes(Array("hello ".utf8)), .bytes(Array("shell".utf8)), .endOfInput])
            #expect(result.stdout == "hello shell")
            #expect(result.exit == .exited(0))
        }
    }

    @Test func terminalSessionHasAControllingTTYOfTheGivenSize() async throws {
        try await TestAgent.with { agent in
            let result = try await session(
                agent, argv: ["sh", "-c", "stty size; tty; exit 7"], tty: true, rows: 33, columns: 101)
            #expect(result.stdout.contains("33 101"))
            #expect(result.stdout.contains("/dev/pts/"))
            #expect(result.exit == .exited(7))
        }
    }

    @Test func interactiveShellRunsTypedCommands() async throws {
        try await TestAgent.with { agent in
            let result = try await session(
                agent, argv: ["sh"], tty: true, rows: 24, columns: 80,
                inputs: [
                    .bytes(Array("echo $((6 * 7))\n".utf8)), .resize(rows: 50, columns: 120),
                    .bytes(Array("stty size; exit 4\n".utf8)),
                ])
            #expect(result.stdout.contains("42"))
            #expect(result.stdout.contains("50 120"))
            #expect(result.exit == .exited(4))
        }
    }

    @Test func inputBeyondTheQueueLimitStillArrivesWhole() async throws {
        try await TestAgent.with { agent in
            let chunk = [UInt8](repeating: 0x61, count: 64 << 10)
            let inputs = Array(repeating: ShellClient.Input.bytes(chunk), count: 48) + [.endOfInput]
            let result = try await session(agent, argv: ["sh", "-c", "sleep 1; wc -c"], tty: false, inputs: inputs)
            #expect(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "\(48 * (64 << 10))")
            #expect(result.exit == .exited(0))
        }
    }

    @Test func aProcessThatNeverReadsItsInputStillEndsTheSession() async throws {
        try await TestAgent.with { agent in
            let chunk = [UInt8](repeating: 0x62, count: 64 << 10)
            let inputs = Array(repeating: ShellClient.Input.bytes(chunk), count: 64)
            let started = ContinuousClock.now
            let result = try await session(agent, argv: ["sleep", "1"], tty: false, inputs: inputs)
            #expect(result.exit == .exited(0))
            #expect(ContinuousClock.now - started < .seconds(30))
        }
    }

    @Test func signalsReachTheSession() async throws {
        try await TestAgent.with { agent in
            let result = try await session(agent, argv: ["sleep", "30"], tty: false, inputs: [.signal(15)])
            #expect(result.exit == .signaled(15))
        }
    }

    @Test func missingProgramFailsTheSessionWithItsName() async throws {
        try await TestAgent.with { agent in
            await #expect(throws: (any Error).self) {
                _ = try await session(agent, argv: ["no-such-shell-xyz"], tty: true)
            }
            let after = try await session(agent, argv: ["true"], tty: false)
            #expect(after.exit == .exited(0))
        }
    }
}
