import ArgumentParser

/// `vmm`: the vmtools virtual machine monitor. One process runs one VM.
@main
struct VMMCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vmm",
        abstract: "The vmtools virtual machine monitor: runs one KVM virtual machine per process.",
        subcommands: [CheckCommand.self]
    )
}
