import Foundation
import GRPCCore
import GuestClient
import GuestProtocol
import Testing

/// LaunchProcess through a real gRPC connection to maitred's service.
@Suite struct LaunchProcessTests {
    private func launch(_ agent: TestAgent, _ argv: [String], stdin: String = "", wait: Bool = true) async throws
        -> Vmtools_Guest_LaunchProcessResponse
    {
        var request = Vmtools_Guest_LaunchProcessRequest()
        request.argv = argv
        request.wait = wait
        request.stdin = Data(stdin.utf8)
        return try await agent.maitred.withClient { client in
            try await Vmtools_Guest_Maitred.Client(wrapping: client).launchProcess(request)
        }
    }

    @Test func returnsOutputAndExitCode() async throws {
        try await TestAgent.with { agent in
            let response = try await launch(agent, ["sh", "-c", "echo out; echo err >&2; exit 3"])
            #expect(String(decoding: response.stdout, as: UTF8.self) == "out\n")
            #expect(String(decoding: response.stderr, as: UTF8.self) == "err\n")
            #expect(response.termination == .exitCode(3))
            #expect(response.pid > 0)
        }
    }

    @Test func feedsStandardInput() async throws {
        try await TestAgent.with { agent in
            let response = try await launch(agent, ["tr", "a-z", "A-Z"], stdin: "hello")
            #expect(String(decoding: response.stdout, as: UTF8.self) == "HELLO")
            #expect(response.termination == .exitCode(0))
        }
    }

    /// Far more input than a pipe holds, to a process that starts reading late: all of it arrives
    /// (a tail still queued when the writing side closed used to be dropped).
    @Test func feedsAllOfALargeInputToASlowReader() async throws {
        try await TestAgent.with { agent in
            let input = String(repeating: "x", count: 2 << 20)
            let response = try await launch(agent, ["sh", "-c", "sleep 1; wc -c"], stdin: input)
            #expect(
                String(decoding: response.stdout, as: UTF8.self).trimmingCharacters(in: .whitespaces) == "\(2 << 20)\n")
            #expect(response.termination == .exitCode(0))
        }
    }

    @Test func reportsTheKillingSignal() async throws {
        try await TestAgent.with { agent in
            let response = try await launch(agent, ["sh", "-c", "kill -9 $$"])
            #expect(response.termination == .signal(9))
        }
    }

    @Test func truncatesOutputBeyondTheLimit() async throws {
        try await TestAgent.with { agent in
            let response = try await launch(agent, ["head", "-c", "2000000", "/dev/zero"])
            #expect(response.stdout.count == 1 << 20)
            #expect(response.outputTruncated)
            #expect(response.termination == .exitCode(0))
        }
    }

    @Test func aBackgroundChildHoldingTheOutputDoesNotHoldTheCall() async throws {
        try await TestAgent.with { agent in
            let started = ContinuousClock.now
            let response = try await launch(agent, ["sh", "-c", "sleep 30 & echo started"])
            #expect(String(decoding: response.stdout, as: UTF8.self) == "started\n")
            #expect(response.termination == .exitCode(0))
            #expect(ContinuousClock.now - started < .seconds(20))  // the background child lives 30 s
        }
    }

    @Test func bothPipesAreReadAtOnce() async throws {
        try await TestAgent.with { agent in
            // 256 KiB to stderr before anything to stdout: stderr's pipe must be drained meanwhile.
            let response = try await launch(agent, ["sh", "-c", "head -c 262144 /dev/zero >&2; echo done"])
            #expect(response.stderr.count == 262_144)
            #expect(String(decoding: response.stdout, as: UTF8.self) == "done\n")
        }
    }

    @Test func detachedProcessReturnsItsPid() async throws {
        try await TestAgent.with { agent in
            let response = try await launch(agent, ["sleep", "0.1"], wait: false)
            #expect(response.pid > 0)
            #expect(response.termination == nil)
        }
    }

    @Test func missingProgramIsNotFoundAndTheAgentKeepsServing() async throws {
        try await TestAgent.with { agent in
            let error = await #expect(throws: RPCError.self) { try await launch(agent, ["no-such-program-xyz"]) }
            #expect(error?.code == .notFound)
            #expect(error?.message.contains("no-such-program-xyz") == true)
            let empty = await #expect(throws: RPCError.self) { try await launch(agent, []) }
            #expect(empty?.code == .invalidArgument)
            let after = try await launch(agent, ["true"])
            #expect(after.termination == .exitCode(0))
        }
    }

    @Test func missingWorkingDirectoryIsNamed() async throws {
        try await TestAgent.with { agent in
            var request = Vmtools_Guest_LaunchProcessRequest()
            request.argv = ["true"]
            request.wait = true
            request.workingDirectory = "/no/such/dir"
            let error = await #expect(throws: RPCError.self) {
                try await agent.maitred.withClient { client in
                    try await Vmtools_Guest_Maitred.Client(wrapping: client).launchProcess(request)
                }
            }
            #expect(error?.message.contains("/no/such/dir") == true)
        }
    }
}
