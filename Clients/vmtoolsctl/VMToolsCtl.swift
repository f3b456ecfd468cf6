import ArgumentParser
import GuestClient

/// vmtoolsctl: the command-line client of vmtools (ChromeOS's vmc).
@main
struct VMToolsCtl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vmtoolsctl",
        abstract: "Run and reach vmtools virtual machines.",
        discussion: """
            start, stop, list, info and disk talk to concierge (org.vmtools.Concierge) on the \
            system bus, container and app to cicerone (org.vmtools.Cicerone): root and members \
            of group vmtools may use them. shell and exec reach \
            maitred, the agent in every guest, in a VM concierge runs (by name) or through a VM's \
            vsock socket (vmm --vsock PATH). Completion scripts: --generate-completion-script bash.
            """,
        subcommands: [
            Start.self, Stop.self, List.self, Info.self, Shell.self, Exec.self, Share.self, Unshare.self, Shares.self,
            Disk.self, Container.self, App.self, Guest.self, Image.self,
        ])
}

/// How to reach a guest service: a VM concierge runs (by name), the VM's vsock socket, or a
/// socket that leads to the service.
struct EndpointOptions: ParsableArguments {
    @Option(name: .customLong("vsock"), help: "The VM's vsock socket (vmm --vsock), for a VM started by hand.")
    var vsockSocket: String?

    @Option(help: "Guest vsock port (default: the service's own).")
    var port: UInt32?

    @Option(help: "A Unix socket that leads straight to the service (no CONNECT exchange).")
    var socket: String?

    func validate() throws {
        guard vsockSocket == nil || socket == nil else {
            throw ValidationError("give --vsock PATH or --socket PATH, not both")
        }
    }

    /// Whether `words` (captured for passthrough, so ArgumentParser did not see them) ask for help.
    static func asksForHelp(_ words: [String]) -> Bool { words.first == "-h" || words.first == "--help" }

    /// Whether a socket was named (so no VM name is expected).
    var isExplicit: Bool { vsockSocket != nil || socket != nil }

    /// The endpoint named by the options; a ValidationError when none was.
    func endpoint(defaultPort: UInt32) throws -> GuestEndpoint {
        if let socket { return .socket(socket) }
        guard let vsockSocket else { throw ValidationError("give --vsock PATH or --socket PATH") }
        return .vsock(socket: vsockSocket, port: port ?? defaultPort)
    }

    /// For `shell`/`exec`'s trailing words, `[NAME] [--] COMMAND...`: the endpoint (the named
    /// VM's `socketField` socket from concierge, unless a socket was given) and the command.
    func resolve(_ words: [String], defaultPort: UInt32, socketField: String, bus: BusOptions) async throws -> (
        GuestEndpoint, [String]
    ) {
        func command(_ words: ArraySlice<String>) -> [String] {
            Array(words.first == "--" ? words.dropFirst() : words)
        }
        if isExplicit { return (try endpoint(defaultPort: defaultPort), command(words[...])) }
        guard let name = words.first, name != "--" else {
            throw ValidationError("name a VM (see vmtoolsctl list), or give --vsock PATH or --socket PATH")
        }
        guard !name.hasPrefix("-") else {
            throw ValidationError("unknown option '\(name)' (options go before the VM's name)")
        }
        let info = try await bus.concierge().info(name)
        guard let socket = info[socketField]?.text, !socket.isEmpty else {
            throw reportFailure(ConciergeClient.Failure("concierge did not say where VM \(name)'s \(socketField) is"))
        }
        return (.socket(socket), command(words.dropFirst()))
    }
}
