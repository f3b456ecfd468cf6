import ArgumentParser
import DBus
import Foundation

/// `vmtoolsctl app list|launch|icon`: the applications of a container, through cicerone and the
/// container's garcon.
struct App: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List, launch and get the icons of a container's applications.",
        subcommands: [List.self, Launch.self, Icon.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the container's applications (.desktop files).")
        @OptionGroup var bus: BusOptions
        @OptionGroup var names: Container.Names
        @Flag(help: "Print JSON (every field) instead of a table.")
        var json = false
        @Flag(help: "Include applications hidden from menus (NoDisplay).")
        var all = false

        mutating func run() async throws {
            let applications = try ConciergeClient.records(
                try await bus.concierge().call("ListApplications", names.arguments, service: Container.cicerone).first
            ).filter { all || $0["no_display"] != .bool(true) }
            if json {
                Output.printJSON(applications.map { $0.mapValues(\.json) })
                return
            }
            Output.printTable(
                ["ID", "NAME", "EXEC"],
                applications.map { app in ["desktop_file_id", "name", "exec"].map { app[$0]?.text ?? "" } })
        }
    }

    struct Launch: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Start an application by desktop file ID, or a command after --.",
            discussion: "vmtoolsctl app launch demo penguin org.gnome.TextEditor.desktop --file /home/a.txt\n"
                + "vmtoolsctl app launch demo penguin -- xterm -e top")
        @OptionGroup var bus: BusOptions
        @OptionGroup var names: Container.Names
        @Option(name: .customLong("file"), help: "A path in the container or a URL to open with it (repeatable).")
        var files: [String] = []
        @Argument(help: "The application's desktop file ID (or none, and a command after --).")
        var desktopFileID: String?
        @Argument(parsing: .postTerminator, help: "A command to run instead, after --.")
        var command: [String] = []

        mutating func validate() throws {
            guard (desktopFileID == nil) != command.isEmpty else {
                throw ValidationError("give a desktop file ID, or -- and a command (not both)")
            }
        }

        mutating func run() async throws {
            var options: [String: DBusValue] = ["files": .array(files)]
            if let desktopFileID {
                options["desktop_file_id"] = .string(desktopFileID)
            } else {
                options["argv"] = .array(command)
            }
            let reply = try await bus.concierge().call(
                "LaunchApplication", names.arguments + [.options(options)], service: Container.cicerone)
            guard case .array(_, let pids)? = reply.first else { return }
            print("started: pid \(pids.map(\.text).joined(separator: ", ")) in the container")
        }
    }

    struct Icon: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Write an application's icon (PNG or SVG).")
        @OptionGroup var bus: BusOptions
        @OptionGroup var names: Container.Names
        @Argument(help: "The desktop file ID.")
        var desktopFileID: String
        @Option(help: "Pixels.")
        var size: UInt32 = 48
        @Option(help: "Scale for high-density screens.")
        var scale: UInt32 = 1
        @Option(name: .shortAndLong, help: "The file to write (default ID.png or ID.svg here; - for stdout).")
        var output: String?

        mutating func run() async throws {
            let reply = try await bus.concierge().call(
                "GetApplicationIcon",
                names.arguments + [.string(desktopFileID), .uint32(size), .uint32(scale)], service: Container.cicerone)
            guard reply.count == 2, case .array(_, let items) = reply[0], case .string(let format) = reply[1] else {
                throw reportFailure(ConciergeClient.Failure("odd reply from cicerone"))
            }
            let bytes = items.compactMap { value -> UInt8? in if case .byte(let b) = value { b } else { nil } }
            let stem = desktopFileID.hasSuffix(".desktop") ? String(desktopFileID.dropLast(8)) : desktopFileID
            let path = output ?? "\(stem).\(format)"
            if path == "-" {
                writeOut(bytes, to: 1)
                return
            }
            do { try Data(bytes).write(to: URL(fileURLWithPath: path)) } catch {
                throw reportFailure(ConciergeClient.Failure("writing \(path): \(error.localizedDescription)"))
            }
            print("\(path): \(format), \(bytes.count) bytes")
        }
    }
}
