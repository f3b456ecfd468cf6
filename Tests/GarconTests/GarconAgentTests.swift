import DesktopEntries
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import GuestProtocol
import GuestTransport
import Synchronization
import TestSupport
import Testing

@testable import GarconAgent

/// garcon as a whole, on Unix sockets: it presents its token to the host's ContainerListener
/// and keeps the host's application list current. The host here is a recording listener on a
/// real gRPC server, standing in for cicerone (not built yet; the testbed test will use it).
@Suite("garcon's calls to the host")
struct GarconAgentTests {
    final class RecordingListener: Vmtools_Container_ContainerListener.SimpleServiceProtocol {
        let ready = Mutex<[Vmtools_Container_ContainerReadyRequest]>([])
        let updates = Mutex<[Vmtools_Container_UpdateApplicationListRequest]>([])
        let shutdowns = Mutex<[String]>([])

        func containerReady(request: Vmtools_Container_ContainerReadyRequest, context: ServerContext) async throws
            -> Vmtools_Container_Empty
        {
            ready.withLock { $0.append(request) }
            return Vmtools_Container_Empty()
        }

        func containerShutdown(request: Vmtools_Container_ContainerShutdownRequest, context: ServerContext)
            async throws -> Vmtools_Container_Empty
        {
            shutdowns.withLock { $0.append(request.token) }
            return Vmtools_Container_Empty()
        }

        func updateApplicationList(request: Vmtools_Container_UpdateApplicationListRequest, context: ServerContext)
            async throws -> Vmtools_Container_Empty
        {
            updates.withLock { $0.append(request) }
            return Vmtools_Container_Empty()
        }

        func openUrl(request: Vmtools_Container_OpenUrlRequest, context: ServerContext) async throws
            -> Vmtools_Container_Empty
        { Vmtools_Container_Empty() }
    }

    static func eventually(_ condition: () -> Bool) async -> Bool {
        for _ in 0..<200 {
            if condition() { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return condition()
    }

    @Test("ContainerReady with the token, then UpdateApplicationList when a .desktop file is installed")
    func readyAndUpdates() async throws {
        let installed = try GarconServiceTests.Installed()
        try "secret-token-1234\n".write(toFile: "\(installed.root)/token", atomically: true, encoding: .utf8)
        let listener = RecordingListener()
        let hostSocket = "\(installed.root)/host.sock"
        let host = GRPCServer(
            transport: .http2NIOPosix(address: .unixDomainSocket(path: hostSocket), transportSecurity: .plaintext),
            services: [listener])
        var options = GarconAgent.Options()
        options.listen = .unix("\(installed.root)/garcon.sock")
        options.host = .unix(hostSocket)
        options.tokenPath = "\(installed.root)/token"
        options.dataDirectories = [installed.share]
        options.stopsOnSIGTERM = false
        let agent = GarconAgent(options: options, environment: ["PATH": "/usr/bin:/bin"])

        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await host.serve() }
            _ = try await host.transport.listeningAddress
            group.addTask { try await agent.run() }

            #expect(await Self.eventually { !listener.ready.withLock { $0.isEmpty } }, "no ContainerReady")
            #expect(listener.ready.withLock { $0.first?.token } == "secret-token-1234")

            try installed.write(
                "share/applications/new.desktop", "[Desktop Entry]\nType=Application\nName=New\nExec=/bin/true\n")
            let sawNew = await Self.eventually {
                listener.updates.withLock {
                    $0.last?.applications.contains { $0.desktopFileID == "new.desktop" } == true
                }
            }
            #expect(
                sawNew,
                "no UpdateApplicationList with new.desktop: \(listener.updates.withLock { $0.map { $0.applications.map(\.desktopFileID) } })"
            )
            #expect(listener.updates.withLock { $0.allSatisfy { $0.token == "secret-token-1234" } })

            // garcon itself answers on its socket meanwhile.
            try await withGRPCClient(
                transport: .http2NIOPosix(
                    target: .unixDomainSocket(path: "\(installed.root)/garcon.sock"), transportSecurity: .plaintext)
            ) { client in
                let list = try await Vmtools_Container_Garcon.Client(wrapping: client).listApplications(
                    Vmtools_Container_Empty())
                #expect(list.applications.contains { $0.desktopFileID == "new.desktop" })
            }
            group.cancelAll()
            host.beginGracefulShutdown()
        }
    }

    @Test(
        "the garcon executable, and maitred started as garcon (the guest's way): ready with its token, its initial list, and on SIGTERM goodbye and exit 0",
        arguments: ["garcon", "maitred"])
    func executable(product: String) async throws {
        let installed = try GarconServiceTests.Installed()
        // maitred runs as garcon when its argv[0] says garcon, as the image's /usr/bin/garcon link.
        let program = "\(installed.root)/bin/garcon"
        try FileManager.default.createDirectory(atPath: "\(installed.root)/bin", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: program, withDestinationPath: builtProduct(product))
        try "process-token-42".write(toFile: "\(installed.root)/token", atomically: true, encoding: .utf8)
        let listener = RecordingListener()
        let hostSocket = "\(installed.root)/host.sock"
        let host = GRPCServer(
            transport: .http2NIOPosix(address: .unixDomainSocket(path: hostSocket), transportSecurity: .plaintext),
            services: [listener])
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await host.serve() }
            _ = try await host.transport.listeningAddress
            let garcon = Process()
            garcon.executableURL = URL(fileURLWithPath: program)
            garcon.arguments = [
                "--listen", "unix:\(installed.root)/garcon.sock", "--host", "unix:\(hostSocket)",
                "--token-file", "\(installed.root)/token",
            ]
            garcon.environment = [
                "XDG_DATA_DIRS": installed.share, "XDG_DATA_HOME": "/nonexistent", "PATH": "/usr/bin:/bin",
            ]
            try garcon.run()
            #expect(await Self.eventually { !listener.updates.withLock { $0.isEmpty } }, "no initial list")
            #expect(listener.ready.withLock { $0.map(\.token) } == ["process-token-42"])
            #expect(
                listener.updates.withLock { $0.first?.applications.map(\.desktopFileID) }
                    == ["one-at-a-time.desktop", "org.example.Touch.desktop"])
            garcon.terminate()
            #expect(await Self.eventually { !garcon.isRunning }, "garcon did not end on SIGTERM")
            #expect(garcon.terminationReason == .exit && garcon.terminationStatus == 0)
            #expect(listener.shutdowns.withLock { $0 } == ["process-token-42"])
            if garcon.isRunning { kill(garcon.processIdentifier, SIGKILL) }
            host.beginGracefulShutdown()
        }
    }

    @Test("no token, no garcon: the error names the token file")
    func missingToken() async throws {
        var options = GarconAgent.Options()
        options.tokenPath = "/nonexistent/.container_token"
        options.host = nil
        options.stopsOnSIGTERM = false
        let error = await #expect(throws: GarconError.self) {
            try await GarconAgent(options: options, environment: [:]).run()
        }
        #expect(error?.description == "the container token /nonexistent/.container_token: No such file or directory")
    }
}
