import DesktopEntries
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import GuestProtocol
import Testing

@testable import GarconAgent

/// garcon's service over a real gRPC connection (a Unix socket), on desktop files, icons and
/// programs in a temporary folder, and this machine's dpkg database.
@Suite("garcon's service")
struct GarconServiceTests {
    static let png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13] + Array("IHDR".utf8)

    /// A data directory with two applications and an icon, and a place for their output.
    final class Installed {
        let root: String
        var share: String { "\(root)/share" }
        var out: String { "\(root)/out" }

        init() throws {
            root = NSTemporaryDirectory() + "garcon-" + UUID().uuidString.prefix(8).lowercased()
            for folder in ["share/applications", "share/icons/hicolor/48x48/apps", "out"] {
                try FileManager.default.createDirectory(atPath: "\(root)/\(folder)", withIntermediateDirectories: true)
            }
            try write(
                "share/applications/org.example.Touch.desktop",
                "[Desktop Entry]\nType=Application\nName=Toucher\nName[de]=Berührer\nIcon=toucher\n"
                    + "Exec=/usr/bin/touch %F\nPath=\(root)/out\nMimeType=text/plain;\nKeywords=touch;file;\n")
            try write(
                "share/applications/one-at-a-time.desktop",
                "[Desktop Entry]\nType=Application\nName=One\nExec=/usr/bin/touch %f\nPath=\(root)/out\nNoDisplay=true\n"
            )
            try write(
                "share/applications/broken.desktop", "[Desktop Entry]\nType=Application\nName=Broken\nExec=x \"open\n")
            try write("share/icons/hicolor/48x48/apps/toucher.png", Data(GarconServiceTests.png))
        }

        deinit { try? FileManager.default.removeItem(atPath: root) }

        func write(_ path: String, _ text: String) throws { try write(path, Data(text.utf8)) }
        func write(_ path: String, _ data: Data) throws { try data.write(to: URL(fileURLWithPath: "\(root)/\(path)")) }
    }

    /// Serves garcon on a Unix socket and runs `body` with a client.
    static func withGarcon(
        _ installed: Installed,
        _ body: (Vmtools_Container_Garcon.Client<HTTP2ClientTransport.Posix>) async throws -> Void
    ) async throws {
        let service = GarconService(
            applications: ApplicationIndex(dataDirectories: [installed.share]),
            icons: IconLookup(dataDirectories: [installed.share], pixmapDirectories: []),
            launcher: ApplicationLauncher(environment: ["PATH": "/usr/bin:/bin"]))
        let socket = "\(installed.root)/garcon.sock"
        let server = GRPCServer(
            transport: .http2NIOPosix(address: .unixDomainSocket(path: socket), transportSecurity: .plaintext),
            services: [service])
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.serve() }
            _ = try await server.transport.listeningAddress
            try await withGRPCClient(
                transport: .http2NIOPosix(target: .unixDomainSocket(path: socket), transportSecurity: .plaintext)
            ) { client in
                try await body(Vmtools_Container_Garcon.Client(wrapping: client))
            }
            server.beginGracefulShutdown()
            try await group.waitForAll()
        }
    }

    static func eventually(_ condition: () -> Bool) async -> Bool {
        for _ in 0..<100 {
            if condition() { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return condition()
    }

    @Test("ListApplications: every application with its names, keywords, MIME types and flags")
    func list() async throws {
        let installed = try Installed()
        try await Self.withGarcon(installed) { garcon in
            let list = try await garcon.listApplications(Vmtools_Container_Empty())
            #expect(list.applications.map(\.desktopFileID) == ["one-at-a-time.desktop", "org.example.Touch.desktop"])
            let touch = list.applications[1]
            #expect(touch.names == ["": "Toucher", "de": "Berührer"])
            #expect(touch.keywords[""]?.values == ["touch", "file"])
            #expect(touch.mimeTypes == ["text/plain"])
            #expect(touch.exec == "/usr/bin/touch %F")
            #expect(list.applications[0].noDisplay)
        }
    }

    @Test("GetIcon: a PNG for an application with an icon; the others are left out")
    func icons() async throws {
        let installed = try Installed()
        try await Self.withGarcon(installed) { garcon in
            var request = Vmtools_Container_IconRequest()
            request.desktopFileIds = ["org.example.Touch.desktop", "one-at-a-time.desktop", "missing.desktop"]
            request.size = 48
            let response = try await garcon.getIcon(request)
            #expect(response.icons.map(\.desktopFileID) == ["org.example.Touch.desktop"])
            #expect(Array(response.icons.first?.content ?? Data()) == Self.png)
            #expect(response.icons.first?.format == .png)
            request.size = 0
            await #expect(throws: RPCError.self) { try await garcon.getIcon(request) }
        }
    }

    @Test("LaunchApplication: %F opens all files in one process, %f one process per file, in Path")
    func launch() async throws {
        let installed = try Installed()
        try await Self.withGarcon(installed) { garcon in
            var request = Vmtools_Container_LaunchApplicationRequest()
            request.desktopFileID = "org.example.Touch.desktop"
            request.files = ["\(installed.out)/a", "file://\(installed.out)/b%20c"]
            let all = try await garcon.launchApplication(request)
            #expect(all.pids.count == 1)
            request.desktopFileID = "one-at-a-time.desktop"
            request.files = ["\(installed.out)/d", "\(installed.out)/e"]
            let each = try await garcon.launchApplication(request)
            #expect(each.pids.count == 2)
            let made = { Set((try? FileManager.default.contentsOfDirectory(atPath: installed.out)) ?? []) }
            #expect(await Self.eventually { made() == ["a", "b c", "d", "e"] }, "\(made())")
        }
    }

    @Test("LaunchApplication: an argv runs as given; bad requests get clear errors")
    func launchErrors() async throws {
        let installed = try Installed()
        try await Self.withGarcon(installed) { garcon in
            var request = Vmtools_Container_LaunchApplicationRequest()
            request.argv = ["touch", "\(installed.out)/by-argv"]
            let launched = try await garcon.launchApplication(request)
            #expect(launched.pids.count == 1)
            #expect(await Self.eventually { FileManager.default.fileExists(atPath: "\(installed.out)/by-argv") })

            func code(_ change: (inout Vmtools_Container_LaunchApplicationRequest) -> Void) async -> RPCError.Code? {
                var request = Vmtools_Container_LaunchApplicationRequest()
                change(&request)
                do {
                    _ = try await garcon.launchApplication(request)
                    return nil
                } catch let error as RPCError { return error.code } catch { return .unknown }
            }
            #expect(await code { _ in } == .invalidArgument)
            #expect(await code { $0.desktopFileID = "missing.desktop" } == .notFound)
            #expect(await code { $0.argv = ["no-such-program-here"] } == .notFound)
        }
    }

    @Test("GetPackageInfo from dpkg: by name and by file; unknown ones are NOT_FOUND")
    func packages() async throws {
        let installed = try Installed()
        try await Self.withGarcon(installed) { garcon in
            var request = Vmtools_Container_PackageInfoRequest()
            request.packageName = "coreutils"
            let info = try await garcon.getPackageInfo(request)
            #expect(info.packageID.hasPrefix("coreutils;"))
            #expect(info.packageID.hasSuffix(";installed"))
            #expect(info.size > 0)
            request.filePath = "/usr/share/doc/coreutils/copyright"
            let byFile = try await garcon.getPackageInfo(request)
            #expect(byFile.packageID == info.packageID)
            request.packageName = "no-such-package-anywhere"
            let error = await #expect(throws: RPCError.self) { try await garcon.getPackageInfo(request) }
            #expect(error?.code == .notFound)
            request.filePath = "relative/path"
            let relative = await #expect(throws: RPCError.self) { try await garcon.getPackageInfo(request) }
            #expect(relative?.code == .invalidArgument)
        }
    }
}
