import ArgumentParser
import VMM

#if canImport(Glibc)
    import Glibc
#endif

/// `vmm stop|pause|resume|status|registers SOCKET`: one command to a running VM's control socket; prints
/// the JSON reply and fails when the VM refused or could not be reached.
enum ControlCommand {
    static func send(_ command: String, to socket: String) throws {
        do {
            let reply = try sendControlCommand(command, to: socket)
            print(reply)
            if !reply.contains(#""ok":true"#) { throw ExitCode(1) }
        } catch let error as VMMError {
            printError("vmm: \(error)")
            throw ExitCode(1)
        }
    }
}

struct StopCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stop", abstract: "Stop a running VM.")
    @Argument(help: "The VM's control socket.") var socket: String
    func run() throws { try ControlCommand.send("stop", to: socket) }
}

struct PauseCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "pause", abstract: "Pause a running VM's vCPUs.")
    @Argument(help: "The VM's control socket.") var socket: String
    func run() throws { try ControlCommand.send("pause", to: socket) }
}

struct ResumeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "resume", abstract: "Resume a paused VM.")
    @Argument(help: "The VM's control socket.") var socket: String
    func run() throws { try ControlCommand.send("resume", to: socket) }
}

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Print a running VM's state as JSON.")
    @Argument(help: "The VM's control socket.") var socket: String
    func run() throws { try ControlCommand.send("status", to: socket) }
}

struct RegistersCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "registers",
        abstract: "Print each vCPU's registers (instruction and stack pointers, control registers) as JSON.",
        discussion: "A running VM is paused while they are read and then resumed.")
    @Argument(help: "The VM's control socket.") var socket: String
    func run() throws { try ControlCommand.send("registers", to: socket) }
}

func printError(_ message: String) {
    let line = message + "\n"
    _ = line.withCString { write(STDERR_FILENO, $0, strlen($0)) }
}
