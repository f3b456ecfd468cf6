import DesktopEntries
import Foundation
import GRPCCore
import GuestProtocol

/// What garcon serves in a container: the applications its desktop files describe, their icons,
/// launching them, and package information.
public struct GarconService: Vmtools_Container_Garcon.SimpleServiceProtocol {
    let applications: ApplicationIndex
    let icons: IconLookup
    let launcher: ApplicationLauncher

    public init(applications: ApplicationIndex, icons: IconLookup, launcher: ApplicationLauncher) {
        self.applications = applications
        self.icons = icons
        self.launcher = launcher
    }

    public func listApplications(request: Vmtools_Container_Empty, context: ServerContext) async throws
        -> Vmtools_Container_ApplicationList
    {
        Self.list(applications.scan())
    }

    public func getIcon(request: Vmtools_Container_IconRequest, context: ServerContext) async throws
        -> Vmtools_Container_IconResponse
    {
        guard (1...1024).contains(request.size), request.scale <= 8 else {
            throw RPCError(
                code: .invalidArgument, message: "icon size \(request.size) × \(request.scale) is out of range")
        }
        let installed = applications.scan().applications
        var response = Vmtools_Container_IconResponse()
        for id in request.desktopFileIds {
            guard let name = installed[id]?.icon,
                let icon = icons.find(name, size: Int(request.size), scale: Int(max(request.scale, 1)))
            else { continue }
            var item = Vmtools_Container_Icon()
            item.desktopFileID = id
            item.content = Data(icon.bytes)
            item.format = icon.format == .png ? .png : .svg
            response.icons.append(item)
        }
        return response
    }

    public func launchApplication(request: Vmtools_Container_LaunchApplicationRequest, context: ServerContext)
        async throws -> Vmtools_Container_LaunchApplicationResponse
    {
        var response = Vmtools_Container_LaunchApplicationResponse()
        guard !request.desktopFileID.isEmpty else {
            guard !request.argv.isEmpty else {
                throw RPCError(code: .invalidArgument, message: "name a desktop_file_id or an argv")
            }
            response.pids = [UInt32(try launcher.launch(request.argv + request.files))]
            return response
        }
        guard let entry = applications.scan().applications[request.desktopFileID] else {
            throw RPCError(code: .notFound, message: "no application with desktop file ID \(request.desktopFileID)")
        }
        let lines: [[String]]
        do {
            lines = try entry.commandLines(
                opening: request.files, locale: request.locale.isEmpty ? nil : request.locale)
        } catch {
            throw RPCError(code: .failedPrecondition, message: "\(request.desktopFileID): \(error)")
        }
        for argv in lines {
            response.pids.append(UInt32(try launcher.launch(argv, workingDirectory: entry.workingDirectory)))
        }
        return response
    }

    public func getPackageInfo(request: Vmtools_Container_PackageInfoRequest, context: ServerContext) async throws
        -> Vmtools_Container_PackageInfo
    {
        try PackageQuery(launcher: launcher).info(request)
    }

    /// The applications as the host sees them.
    static func list(_ scan: ApplicationIndex.Scan) -> Vmtools_Container_ApplicationList {
        var list = Vmtools_Container_ApplicationList()
        list.applications = scan.sorted.map { entry in
            var app = Vmtools_Container_Application()
            app.desktopFileID = entry.id
            app.names = entry.names
            app.comments = entry.comments
            app.keywords = entry.keywords.mapValues { words in
                var list = Vmtools_Container_StringList()
                list.values = words
                return list
            }
            app.mimeTypes = entry.mimeTypes
            app.noDisplay = entry.noDisplay
            app.startupWmClass = entry.startupWMClass ?? ""
            app.startupNotify = entry.startupNotify
            app.exec = entry.exec ?? ""
            app.terminal = entry.terminal
            app.categories = entry.categories
            return app
        }
        return list
    }
}
