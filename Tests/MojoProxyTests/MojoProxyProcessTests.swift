import EventLoop
import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The `mojo-proxy` executable, both ends as real processes linked through a Unix socket (the
/// guest's `--link-socket`, where a VM's end would use vsock).
@Suite("mojo-proxy processes", .serialized)
struct MojoProxyProcessTests {
    static func start(_ arguments: [String]) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: builtProduct("mojo-proxy"))
        process.arguments = arguments
        try process.run()
        return process
    }

    static func waitFor(_ path: String) -> Bool {
        for _ in 0..<200 {
            if access(path, F_OK) == 0 { return true }
            usleep(25_000)
        }
        return false
    }

    @Test("host and guest ends carry a client's connection; the host end outlives a guest end and serves the next")
    func endToEnd() throws {
        var template = Array("/tmp/mojo-proc-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw TestError("mkdtemp") }
        let base = String(cString: made)
        defer { try? FileManager.default.removeItem(atPath: base) }
        let server = try UnixSocket.listen(at: base + "/service.sock")
        _ = fcntl(server, F_SETFL, fcntl(server, F_GETFL) & ~O_NONBLOCK)
        defer { close(server) }

        let host = try Self.start(["host", "--socket", base + "/link.sock", "--channel", "7:\(base)/service.sock"])
        defer { host.terminate() }
        #expect(Self.waitFor(base + "/link.sock"))
        for round in 1...2 {
            let guest = try Self.start([
                "guest", "--link-socket", base + "/link.sock", "--channel", "7:\(base)/guest-\(round).sock",
            ])
            #expect(Self.waitFor(base + "/guest-\(round).sock"))
            let client = try ProxyPair.connect(base + "/guest-\(round).sock")
            var entry = pollfd(fd: server, events: Int16(POLLIN), revents: 0)
            #expect(poll(&entry, 1, 10_000) == 1)
            let accepted = accept(server, nil, nil)
            ProxyPair.timeouts(accepted)
            let message = Array("round \(round)".utf8)
            #expect(writeAll(client, message))
            #expect(readExactly(accepted, message.count) == message)
            #expect(writeAll(accepted, message.reversed()))
            #expect(readExactly(client, message.count) == message.reversed())
            close(client)
            close(accepted)
            guest.terminate()
            guest.waitUntilExit()
        }
        #expect(host.isRunning)
    }

    @Test("bad channels are refused with a clear message")
    func badChannels() throws {
        let pipe = Pipe()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: builtProduct("mojo-proxy"))
        process.arguments = ["host", "--socket", "/tmp/never.sock", "--channel", "x:relative"]
        process.standardError = pipe
        try process.run()
        process.waitUntilExit()
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.terminationStatus != 0)
        #expect(text.contains("expected N:/absolute/path"), "\(text)")
    }
}
