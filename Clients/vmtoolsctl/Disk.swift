import ArgumentParser
import DBus

/// `vmtoolsctl disk ...`: concierge's sparse disk images under /var/lib/vmtools/disks.
struct Disk: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create, list and destroy disk images (sparse raw files) for VMs.",
        subcommands: [Create.self, List.self, Destroy.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a disk image; give it to a VM with `vmtoolsctl start --writable-disk NAME`.")

        @OptionGroup var bus: BusOptions

        @Argument(help: "The disk's name.")
        var name: String

        @Option(help: "Size, such as 10G or 512M (sparse: only what is written takes space).")
        var size: String

        @Option(help: "Start from a guest image's root disk (its rootfs.img), grown to --size.")
        var fromImage: String?

        func validate() throws {
            guard Output.parseSize(size) != nil else {
                throw ValidationError("--size \(size) is not a size such as 10G, 512M or 4096")
            }
        }

        mutating func run() async throws {
            let concierge = try await bus.concierge()
            var options: [String: DBusValue] = [:]
            if let fromImage { options["from_image"] = .string(fromImage) }
            let reply = try await concierge.call(
                "CreateDiskImage", [.string(name), .uint64(Output.parseSize(size) ?? 0), .options(options)],
                timeout: .seconds(600))
            print(reply.first?.text ?? "")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List disk images with their size and use.")

        @OptionGroup var bus: BusOptions

        @Flag(help: "Print JSON.")
        var json = false

        mutating func run() async throws {
            let concierge = try await bus.concierge()
            let disks = try ConciergeClient.records(try await concierge.call("ListDiskImages").first)
                .sorted { $0["name"]?.text ?? "" < $1["name"]?.text ?? "" }
            if json {
                Output.printJSON(disks.map { $0.mapValues(\.json) })
                return
            }
            guard !disks.isEmpty else {
                print("no disk images")
                return
            }
            func bytes(_ value: DBusValue?) -> String {
                guard case .uint64(let n)? = value else { return "-" }
                return Output.size(n)
            }
            Output.printTable(
                ["NAME", "SIZE", "USED", "PATH"],
                disks.map {
                    [
                        $0["name"]?.text ?? "-", bytes($0["size_bytes"]), bytes($0["allocated_bytes"]),
                        $0["path"]?.text ?? "-",
                    ]
                })
        }
    }

    struct Destroy: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a disk image (not while a VM uses it).")

        @OptionGroup var bus: BusOptions

        @Argument(help: "The disk's name.")
        var name: String

        mutating func run() async throws {
            _ = try await bus.concierge().call("DestroyDiskImage", [.string(name)])
        }
    }
}
