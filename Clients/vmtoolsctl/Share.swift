import ArgumentParser
import DBus
import Foundation

/// `vmtoolsctl share NAME PATH`: a host folder (or file) into a VM's /mnt/shared, through the
/// VM's 9P server at seneschal.
struct Share: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Share a host folder or file with a VM; the guest sees it under /mnt/shared.")

    @OptionGroup var bus: BusOptions

    @Argument(help: "The VM's name.")
    var vm: String

    @Argument(help: "The folder or file to share (no symlinks in the path).")
    var path: String

    @Flag(help: "Let the guest change it (shares are read-only by default).")
    var writable = false

    @Option(name: .customLong("as"), help: "The name in /mnt/shared (default: the path's last component).")
    var shareName: String?

    mutating func run() async throws {
        let client = try await bus.concierge()
        let (handle, folder) = try await SharedFolder.of(vm, client)
        var options: [String: DBusValue] = ["writable": .bool(writable)]
        if let shareName { options["name"] = .string(shareName) }
        let reply = try await client.call(
            "SharePath", [.uint32(handle), .string(SharedFolder.absolute(path)), .options(options)],
            service: SharedFolder.seneschal)
        print(folder + (reply.first?.text ?? ""))
    }
}

/// `vmtoolsctl unshare NAME SHARE`.
struct Unshare: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Stop sharing something with a VM.")

    @OptionGroup var bus: BusOptions

    @Argument(help: "The VM's name.")
    var vm: String

    @Argument(help: "The share: its name, its path in the guest, or the host path.")
    var share: String

    mutating func run() async throws {
        let client = try await bus.concierge()
        let (handle, folder) = try await SharedFolder.of(vm, client)
        var share = share
        if share.hasPrefix(folder + "/") { share.removeFirst(folder.count) }
        _ = try await client.call("UnsharePath", [.uint32(handle), .string(share)], service: SharedFolder.seneschal)
    }
}

/// `vmtoolsctl shares NAME`.
struct Shares: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List what is shared with a VM.")

    @OptionGroup var bus: BusOptions

    @Argument(help: "The VM's name.")
    var vm: String

    @Flag(help: "Print JSON.")
    var json = false

    mutating func run() async throws {
        let client = try await bus.concierge()
        let (handle, folder) = try await SharedFolder.of(vm, client)
        let shares = try ConciergeClient.records(
            try await client.call("ListShares", [.uint32(handle)], service: SharedFolder.seneschal).first)
        if json {
            Output.printJSON(shares.map { $0.mapValues(\.json) })
            return
        }
        guard !shares.isEmpty else {
            print("nothing shared with \(vm)")
            return
        }
        Output.printTable(
            ["IN THE GUEST", "MODE", "HOST PATH"],
            shares.map { share in
                [
                    folder + (share["guest_path"]?.text ?? ""), share["writable"]?.text == "yes" ? "rw" : "ro",
                    share["host_path"]?.text ?? "-",
                ]
            })
    }
}

enum SharedFolder {
    static let seneschal = "org.vmtools.Seneschal"

    /// The VM's 9P server handle and where its guest mounted it.
    static func of(_ vm: String, _ client: ConciergeClient) async throws -> (handle: UInt32, folder: String) {
        let info = try await client.info(vm)
        guard case .uint32(let handle)? = info["seneschal_handle"], handle != 0,
            let folder = info["shared_folder"]?.text, !folder.isEmpty
        else {
            throw reportFailure(
                ConciergeClient.Failure(
                    "VM \(vm) has no shared folder (was seneschal installed when it started? see concierge's journal)"))
        }
        return (handle, folder)
    }

    /// `path` made absolute against the working directory, "." and ".." taken out as written
    /// (symlinks are left for seneschal to refuse).
    static func absolute(_ path: String) -> String {
        URL(fileURLWithPath: path, relativeTo: URL(fileURLWithPath: FileManager.default.currentDirectoryPath))
            .standardizedFileURL.path
    }
}
