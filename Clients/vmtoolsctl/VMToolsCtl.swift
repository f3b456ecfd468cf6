import ArgumentParser

/// vmtoolsctl: the command-line client of vmtools (ChromeOS's vmc).
@main
struct VMToolsCtl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vmtoolsctl",
        abstract: "Run and reach vmtools virtual machines.",
        discussion: """
            The guest commands reach maitred, the agent in every guest, through a VM's vsock \
            socket (vmm --vsock PATH) or a plain socket that leads to the guest port.
            """,
        subcommands: [Exec.self, Shell.self, Guest.self, Image.self])
}

/// How to reach a guest service: through the VM's vsock socket, or a socket that leads there.
struct EndpointOptions: ParsableArguments {
    @Option(name: .customLong("vsock"), help: "The VM's vsock socket (vmm --vsock).")
    var vsockSocket: String?

    @Option(help: "Guest vsock port (default: the service's own).")
    var port: UInt32?

    @Option(help: "A Unix socket that leads straight to the service (no CONNECT exchange).")
    var socket: String?

    func validate() throws {
        guard (vsockSocket == nil) != (socket == nil) else {
            throw ValidationError("name exactly one of --vsock PATH or --socket PATH")
        }
    }

    func endpoint(defaultPort: UInt32) -> GuestEndpointChoice {
        if let socket { return .socket(socket) }
        return .vsock(socket: vsockSocket ?? "", port: port ?? defaultPort)
    }
}
