import ConciergeService
import Foundation
import Testing

@Suite("concierge resource pools")
struct ResourcePoolsTests {
    let config = PoolConfiguration(firstCID: 3, lastCID: 6, subnetBase: IPv4Address("100.115.92.24")!, subnetCount: 3)

    @Test("each VM gets a distinct CID from 3 up, a distinct /30 and a distinct unicast, local MAC")
    func distinct() throws {
        var pools = ResourcePools()
        let a = try pools.allocate(for: "a", config: config)
        let b = try pools.allocate(for: "b", config: config)
        #expect(a.cid == 3 && b.cid == 4)
        #expect(a.subnetIndex == 0 && b.subnetIndex == 1)
        #expect(a.mac != b.mac)
        for mac in [a.mac, b.mac] {
            let first = try #require(UInt8(mac.prefix(2), radix: 16))
            #expect(first & 0x02 != 0 && first & 0x01 == 0, "\(mac) must be locally administered and unicast")
            #expect(mac.split(separator: ":").count == 6)
        }
        let subnet = config.subnet(b.subnetIndex)
        #expect("\(subnet)" == "100.115.92.28/30")
        #expect("\(subnet.host)" == "100.115.92.29" && "\(subnet.guest)" == "100.115.92.30")
    }

    @Test("exhaustion is a clear error naming what ran out; a release makes room again")
    func exhaustion() throws {
        var pools = ResourcePools()
        for name in ["a", "b", "c"] { _ = try pools.allocate(for: name, config: config) }
        #expect(throws: AllocationError.exhausted("IPv4 subnets (3 /30s from 100.115.92.24)")) {
            try pools.allocate(for: "d", config: config)
        }
        #expect(pools.held["d"] == nil, "a failed allocation holds nothing")
        let released = pools.release("b")
        let freed = try #require(released)
        let d = try pools.allocate(for: "d", config: config)
        #expect(d.subnetIndex == freed.subnetIndex)
        #expect(d.cid != freed.cid, "CIDs go round, so a just-freed CID is not handed out at once")
    }

    @Test("CIDs wrap around and skip the ones still held; with all held, exhaustion")
    func cidWrap() throws {
        let wide = PoolConfiguration(firstCID: 3, lastCID: 5, subnetBase: config.subnetBase, subnetCount: 10)
        var pools = ResourcePools()
        for name in ["a", "b", "c"] { _ = try pools.allocate(for: name, config: wide) }
        #expect(throws: AllocationError.exhausted("vsock CIDs (3–5)")) { try pools.allocate(for: "d", config: wide) }
        pools.release("a")
        #expect(try pools.allocate(for: "d", config: wide).cid == 3)
        pools.release("c")
        #expect(try pools.allocate(for: "e", config: wide).cid == 5, "after 3 comes 4 (held) then 5")
    }

    @Test("a VM cannot allocate twice")
    func twice() throws {
        var pools = ResourcePools()
        _ = try pools.allocate(for: "a", config: config)
        #expect(throws: AllocationError.alreadyHeld(vm: "a")) { try pools.allocate(for: "a", config: config) }
    }

    @Test("MACs never repeat among held VMs, even when the random source does")
    func macCollision() throws {
        var pools = ResourcePools()
        var values: [UInt64] = [42, 42, 42, 7]
        let a = try pools.allocate(for: "a", config: config) { values.removeFirst() }
        let b = try pools.allocate(for: "b", config: config) { values.removeFirst() }
        #expect(a.mac == "02:2a:00:00:00:00" && b.mac == "02:07:00:00:00:00")
    }

    @Test("state saved and loaded again is the same, so a restart hands out nothing still held")
    func persistence() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("pools-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let file = StateFile<ResourcePools>(path: "\(folder)/allocations.json")
        #expect(try file.load() == nil, "no file yet: no state")
        var pools = ResourcePools()
        let a = try pools.allocate(for: "a", config: config)
        try file.save(pools)
        var restarted = try #require(try file.load())
        #expect(restarted == pools)
        let b = try restarted.allocate(for: "b", config: config)
        #expect(b.cid != a.cid && b.subnetIndex != a.subnetIndex && b.mac != a.mac)
        #expect(!FileManager.default.fileExists(atPath: "\(folder)/allocations.json.tmp"))
    }

    @Test("a state file that does not parse is an error naming it, never an empty state")
    func corrupt() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("pools-\(UUID().uuidString).json").path
        defer { unlink(path) }
        try Data("{not json".utf8).write(to: URL(fileURLWithPath: path))
        #expect { try StateFile<ResourcePools>(path: path).load() } throws: { "\($0)".contains(path) }
    }

    @Test("IPv4 addresses parse and print as dotted quads; junk is refused")
    func addresses() {
        #expect(IPv4Address("100.115.92.24")?.value == 0x6473_5C18)
        #expect(PoolConfiguration().subnetBase == IPv4Address("100.115.92.24"))
        for junk in ["", "1.2.3", "1.2.3.4.5", "256.1.1.1", "a.b.c.d", "1..2.3", "-1.2.3.4", "1.2.3.4 "] {
            #expect(IPv4Address(junk) == nil, "\(junk)")
        }
    }
}
