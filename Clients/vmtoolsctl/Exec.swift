import ArgumentParser
import Foundation
import GRPCCore
import GuestClient
import GuestProtocol

/// `vmtoolsctl exec -- CMD...`: LaunchProcess, output and exit status passed through.
struct Exec: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a command in the guest (through maitred) and wait for it.",
        discussion: "Exits with the command's status (128 + N when signal N killed it).")

    @OptionGroup var endpoint: EndpointOptions
    @OptionGroup var bus: BusOptions

    @Option(name: .customLong("env"), help: "KEY=VALUE for the command's environment (repeatable).")
    var environment: [String] = []

    @Option(help: "Working directory in the guest.")
    var cwd: String?

    @Flag(help: "Start the command and return its pid without waiting.")
    var detach = false

    @Flag(help: "Pass this command's standard input to the guest command.")
    var stdin = false

    @Argument(
        parsing: .captureForPassthrough,
        help: "The VM's name (unless --vsock or --socket), then -- and the command with its arguments.")
    var words: [String] = []

    mutating func run() async throws {
        if EndpointOptions.asksForHelp(words) { throw CleanExit.helpRequest(self) }
        let (target, argv) = try await endpoint.resolve(
            words, defaultPort: GuestEndpoint.maitredPort, socketField: "maitred_socket", bus: bus)
        guard !argv.isEmpty else { throw ValidationError("name a command after --") }
        var request = Vmtools_Guest_LaunchProcessRequest()
        request.argv = argv
        for pair in environment {
            guard let equals = pair.firstIndex(of: "=") else { throw ValidationError("--env \(pair) is not KEY=VALUE") }
            request.env[String(pair[..<equals])] = String(pair[pair.index(after: equals)...])
        }
        if !request.env.isEmpty && request.env["PATH"] == nil {
            request.env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        }
        request.workingDirectory = cwd ?? ""
        request.wait = !detach
        if stdin { request.stdin = FileHandle.standardInput.readDataToEndOfFile() }

        let response = try await guestCall {
            try await target.withClient { client in
                try await Vmtools_Guest_Maitred.Client(wrapping: client).launchProcess(request)
            }
        }
        if detach {
            print(response.pid)
            return
        }
        writeOut([UInt8](response.stdout), to: 1)
        writeOut([UInt8](response.stderr), to: 2)
        if response.outputTruncated { writeOut(Array("vmtoolsctl: output truncated at 1 MiB\n".utf8), to: 2) }
        switch response.termination {
        case .exitCode(let code): if code != 0 { throw ExitCode(code) }
        case .signal(let signal): throw ExitCode(128 + signal)
        case nil: throw ExitCode(1)
        }
    }
}
