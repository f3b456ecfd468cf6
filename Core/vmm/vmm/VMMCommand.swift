import ArgumentParser

/// `vmm`: the vmtools virtual machine monitor. One process runs one VM.
@main
struct VMMCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vmm",
        abstract: "The vmtools virtual machine monitor: runs one KVM virtual machine per process.",
        subcommands: [
            RunCommand.self, StopCommand.self, PauseCommand.self, ResumeCommand.self, StatusCommand.self,
            RegistersCommand.self,
            CheckCommand.self,
        ]
    )

    static func main() {
        _ = processStart  // globals are lazy: take the start time before parsing arguments
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            exit(withError: error)
        }
    }
}
