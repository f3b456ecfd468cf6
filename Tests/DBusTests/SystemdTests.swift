import DBus
import DBusTestSupport
import Foundation
import Logging
import Testing

@testable import Journal

#if canImport(Glibc)
    import Glibc
#endif

/// sd_notify and the journal log handler.
@Suite struct SystemdTests {
    @Test func notifyReachesTheNotifySocket() throws {
        var template = Array("/tmp/notify-test.XXXXXX".utf8CString)
        let made = mkdtemp(&template)
        let directory = String(cString: try #require(made))
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = "\(directory)/notify"
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        #expect(fd >= 0)
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in path.utf8.enumerated() { raw[i] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        #expect(bound == 0)
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))

        unsetenv("NOTIFY_SOCKET")
        #expect(!SystemdNotify.ready(), "no socket: a no-op")
        setenv("NOTIFY_SOCKET", path, 1)
        defer { unsetenv("NOTIFY_SOCKET") }

        func receive() -> String {
            var buffer = [UInt8](repeating: 0, count: 512)
            let n = recv(fd, &buffer, buffer.count, 0)
            return String(decoding: buffer.prefix(max(n, 0)), as: UTF8.self)
        }
        #expect(SystemdNotify.ready(status: "serving"))
        #expect(receive() == "READY=1\nSTATUS=serving")
        #expect(SystemdNotify.status("2 VMs"))
        #expect(receive() == "STATUS=2 VMs")
        #expect(SystemdNotify.watchdog())
        #expect(receive() == "WATCHDOG=1")
        #expect(SystemdNotify.stopping())
        #expect(receive() == "STOPPING=1")
    }

    @Test func journalFieldsAreStructured() {
        let event = LogEvent(
            level: .warning, message: "VM stopped", metadata: nil, source: "concierge", file: "Concierge/Vm.swift",
            function: "stop()", line: 42)
        let fields = JournalLogHandler.fields(
            event, metadata: ["vm_name": "demo", "cid": "3", "_bad": "x", "MESSAGE": "spoof"], label: "concierge.vm",
            identifier: "concierge")
        #expect(
            fields == [
                "MESSAGE=VM stopped", "PRIORITY=4", "SYSLOG_IDENTIFIER=concierge", "CODE_FILE=Concierge/Vm.swift",
                "CODE_LINE=42", "CODE_FUNC=stop()", "LOGGER=concierge.vm", "BAD=x", "CID=3", "VM_NAME=demo",
            ])
        #expect(JournalLogHandler.fieldName("vm.name-2") == "VM_NAME_2")
        #expect(JournalLogHandler.fieldName("__") == nil)
        #expect(JournalLogHandler.priority(.critical) == 2)
        #expect(JournalLogHandler.priority(.debug) == 7)
    }

    @Test func withoutAJournalLinesGoToStderr() {
        let handler = JournalLogHandler(label: "test", identifier: "dbus-tests", journalSocket: "/nonexistent/socket")
        #expect(!handler.usesJournal)
        let event = LogEvent(
            level: .info, message: "hello", metadata: nil, source: "t", file: "f.swift", function: "f()", line: 1)
        #expect(
            JournalLogHandler.line(event, metadata: ["vm": "demo"], label: "test", identifier: "dbus-tests")
                == "dbus-tests[test] info: hello vm=demo\n")
        var logger = Logger(label: "test") { _ in handler }
        logger[metadataKey: "vm"] = "demo"
        logger.info("written to stderr")  // must not crash without a journal
    }
}

/// The policies the project installs for the system bus.
@Suite("the bus policies in dbus/system.d")
struct BusPolicyTests {
    static var policies: [String] {
        let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("dbus/system.d")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        return names.filter { $0.hasSuffix(".conf") }.sorted().map { folder.appendingPathComponent($0).path }
    }

    @Test(
        "dbus-daemon accepts every policy file (one it rejects is dropped whole on a reload, and its service refused)")
    func accepted() async throws {
        #expect(Self.policies.count >= 3)
        for policy in Self.policies {
            let bus = try await PrivateBus(policies: [policy])
            bus.terminate()
        }
    }
}
