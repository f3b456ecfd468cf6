import ArgumentParser
import DBus
import Foundation

/// `vmtoolsctl container create|start|stop|list|destroy`: containers in a VM, through cicerone
/// (org.vmtools.Cicerone).
struct Container: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create, start, stop and list containers in a VM (cicerone).",
        discussion: """
            A container's root is a folder in the guest (--image, default the guest's own /) \
            beneath an overlay that keeps its changes in the guest (--changes-dir). garcon runs \
            in it and reports to cicerone; see vmtoolsctl app for its applications.
            """,
        subcommands: [Create.self, Start.self, Stop.self, List.self, Destroy.self])

    static let cicerone = "org.vmtools.Cicerone"

    /// The VM and the container a subcommand is about.
    struct Names: ParsableArguments {
        @Argument(help: "The VM's name.")
        var vm: String

        @Argument(help: "The container's name (a-z, 0-9, '-').")
        var container: String

        var arguments: [DBusValue] { [.string(vm), .string(container)] }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a container (it starts stopped).")
        @OptionGroup var bus: BusOptions
        @OptionGroup var names: Names
        @Option(help: "The folder in the guest its root is made from, read-only (default /).")
        var image: String?
        @Option(help: "Where in the guest its changes go (default /var/lib/vmtools/containers/NAME).")
        var changesDir: String?
        @Option(help: "Its hostname (default its name).")
        var hostname: String?

        mutating func run() async throws {
            var options: [String: DBusValue] = [:]
            if let image { options["image"] = .string(image) }
            if let changesDir { options["changes_dir"] = .string(changesDir) }
            if let hostname { options["hostname"] = .string(hostname) }
            _ = try await bus.concierge().call(
                "CreateContainer", names.arguments + [.options(options)], service: Container.cicerone)
        }
    }

    struct Start: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Start a container; returns once its garcon is ready.")
        @OptionGroup var bus: BusOptions
        @OptionGroup var names: Names

        mutating func run() async throws {
            let reply = try await bus.concierge().call(
                "StartContainer", names.arguments + [.options([:])], timeout: .seconds(90), service: Container.cicerone)
            print(
                "container \(names.container) running in VM \(names.vm) (pid \(reply.first?.text ?? "?") in the guest)")
        }
    }

    struct Stop: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop a container.")
        @OptionGroup var bus: BusOptions
        @OptionGroup var names: Names
        @Option(help: "Seconds between SIGTERM and SIGKILL.")
        var grace: UInt32 = 10

        mutating func run() async throws {
            _ = try await bus.concierge().call(
                "StopContainer", names.arguments + [.options(["grace_s": .uint32(grace)])],
                timeout: .seconds(Int(grace) + 30), service: Container.cicerone)
        }
    }

    struct Destroy: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Forget a stopped container (its changes stay in the guest).")
        @OptionGroup var bus: BusOptions
        @OptionGroup var names: Names

        mutating func run() async throws {
            _ = try await bus.concierge().call("DestroyContainer", names.arguments, service: Container.cicerone)
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List a VM's containers.")
        @OptionGroup var bus: BusOptions
        @Argument(help: "The VM's name.")
        var vm: String
        @Flag(help: "Print JSON (every field) instead of a table.")
        var json = false

        mutating func run() async throws {
            let containers = try ConciergeClient.records(
                try await bus.concierge().call("ListContainers", [.string(vm)], service: Container.cicerone).first)
            if json {
                Output.printJSON(containers.map { $0.mapValues(\.json) })
                return
            }
            guard !containers.isEmpty else {
                print("no containers in VM \(vm) (vmtoolsctl container create \(vm) NAME)")
                return
            }
            Output.printTable(
                ["NAME", "STATE", "IMAGE", "CHANGES", "PID"],
                containers.map { c in ["name", "state", "image", "changes_dir", "pid"].map { c[$0]?.text ?? "-" } })
        }
    }
}
