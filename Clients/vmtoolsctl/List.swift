import ArgumentParser
import DBus
import Foundation

/// `vmtoolsctl list`: the running VMs as a table or JSON.
struct List: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the VMs concierge runs.")

    @OptionGroup var bus: BusOptions

    @Flag(help: "Print JSON (every field) instead of a table.")
    var json = false

    mutating func run() async throws {
        let concierge = try await bus.concierge()
        let vms = try ConciergeClient.records(try await concierge.call("ListVms").first)
            .sorted { $0["name"]?.text ?? "" < $1["name"]?.text ?? "" }
        if json {
            Output.printJSON(vms.map { $0.mapValues(\.json) })
            return
        }
        guard !vms.isEmpty else {
            print("no VMs running")
            return
        }
        Output.printTable(
            ["NAME", "STATE", "CID", "IPV4", "CPUS", "MEMORY", "PID"],
            vms.map { vm in
                let memory = vm["memory_mib"].map { "\($0.text) MiB" } ?? "-"
                return ["name", "state", "cid", "ipv4", "cpus"].map { vm[$0]?.text ?? "-" } + [
                    memory, vm["pid"]?.text ?? "-",
                ]
            })
    }
}

/// `vmtoolsctl info NAME`: one VM's record.
struct Info: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show one VM: resources, sockets, logs.")

    @OptionGroup var bus: BusOptions

    @Argument(help: "The VM's name.")
    var name: String

    @Flag(help: "Print JSON.")
    var json = false

    mutating func run() async throws {
        let info = try await bus.concierge().info(name)
        if json {
            Output.printJSON(info.mapValues(\.json))
        } else {
            print(VMRecord.details(info))
        }
    }
}

/// A VM record from concierge, formatted.
enum VMRecord {
    /// One paragraph: what started and how to reach it.
    static func summary(_ info: [String: DBusValue]) -> String {
        let name = info["name"]?.text ?? "?"
        return """
            \(name): cid \(info["cid"]?.text ?? "?"), \(info["ipv4"]?.text ?? "?") (host \(info["host_ipv4"]?.text ?? "?") on \
            \(info["tap"]?.text ?? "?")), \(info["cpus"]?.text ?? "?") CPUs, \(info["memory_mib"]?.text ?? "?") MiB, vmm pid \
            \(info["pid"]?.text ?? "?")
            shell: vmtoolsctl shell \(name)
            """
    }

    /// Every field, one per line, in a fixed order (unknown fields last).
    static func details(_ info: [String: DBusValue]) -> String {
        let order = [
            "name", "state", "cid", "ipv4", "host_ipv4", "netmask", "mac", "tap", "cpus", "memory_mib", "pid",
            "kernel", "started_at", "vsock_socket", "maitred_socket", "shell_socket", "control_socket", "serial_log",
        ]
        let keys = order.filter { info[$0] != nil } + info.keys.filter { !order.contains($0) }.sorted()
        let width = keys.map(\.count).max() ?? 0
        return keys.map { key in
            var value = info[key]?.text ?? ""
            if key == "started_at", case .double(let seconds)? = info[key] {
                value = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: seconds))
            }
            return key.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + value
        }.joined(separator: "\n")
    }
}
