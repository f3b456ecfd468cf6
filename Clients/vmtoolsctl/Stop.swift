import ArgumentParser
import DBus

/// `vmtoolsctl stop NAME` / `stop --all`.
struct Stop: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Stop a VM: the guest powers off cleanly (or is made to), its resources are freed.")

    @OptionGroup var bus: BusOptions

    @Argument(help: "The VM's name.")
    var name: String?

    @Flag(help: "Stop every VM.")
    var all = false

    func validate() throws {
        guard (name == nil) == all else { throw ValidationError("name a VM, or give --all") }
    }

    mutating func run() async throws {
        let concierge = try await bus.concierge()
        let label = name.map { "stopping \($0)" } ?? "stopping every VM"
        let progress = Progress(label: label)
        do {
            // Shutdown, control socket, SIGTERM, SIGKILL: concierge's steps take up to a minute or so.
            if let name {
                _ = try await concierge.call("StopVm", [.string(name)], timeout: .seconds(120))
            } else {
                _ = try await concierge.call("StopAllVms", timeout: .seconds(300))
            }
        } catch {
            progress.finish(nil)
            throw error
        }
        progress.finish(name.map { "stopped \($0)" } ?? "stopped every VM")
    }
}
