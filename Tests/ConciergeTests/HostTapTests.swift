import ConciergeService
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Real TAP interfaces: needs root (CAP_NET_ADMIN) and /dev/net/tun, which the build machine
/// and CI have; elsewhere the test says why it cannot run, as a failure.
@Suite("concierge host TAP")
struct HostTapTests {
    @Test("a TAP gets the /30's host address, comes up, and goes away with its descriptor")
    func tap() throws {
        try #require(getuid() == 0, "creating TAP interfaces needs root")
        let name = "vmtest\(getpid() % 100_000)"
        let subnet = PoolConfiguration().subnet(57)
        do {
            let tap = try HostTap(name: name, subnet: subnet)
            #expect(tap.name == name)
            let shown = try Self.run("/sbin/ip", "-4", "-o", "addr", "show", "dev", name)
            #expect(shown.contains("inet \(subnet.host)/30"), "\(shown)")
            let link = try Self.run("/sbin/ip", "-o", "link", "show", "dev", name)
            #expect(link.contains(",UP"), "\(link)")
        }
        // The kernel unregisters the interface after the close returns (it waits for references).
        var gone = false
        for _ in 0..<250 where !gone {
            gone = if_nametoindex(name) == 0
            if !gone { usleep(20_000) }
        }
        #expect(gone, "a non-persistent TAP disappears with its last descriptor")
    }

    @Test("bad names are refused before anything is created")
    func badNames() {
        for name in ["", "has space", "x/y", "waytoolongname0123"] {
            #expect(throws: HostNetworkError.self) { try HostTap(name: name, subnet: PoolConfiguration().subnet(0)) }
        }
    }

    static func run(_ arguments: String...) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: arguments[0])
        process.arguments = Array(arguments.dropFirst())
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }
}
