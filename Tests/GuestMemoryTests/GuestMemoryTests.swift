import Testing

@testable import GuestMemory

@Suite("Guest memory")
struct GuestMemoryTests {
    @Test("x86 layout splits RAM around the 32-bit MMIO hole")
    func x86Layout() {
        #expect(GuestMemory.x86Ranges(size: 256 << 20).map(\.size) == [256 << 20])
        let split = GuestMemory.x86Ranges(size: 5 << 30)
        #expect(split.count == 2)
        #expect(split[0].guestAddress == 0 && split[0].size == 3 << 30)
        #expect(split[1].guestAddress == 4 << 30 && split[1].size == 2 << 30)
    }

    @Test("host mappings start on 2 MiB boundaries, so guest huge pages can be host huge pages")
    func hugePageAlignment() throws {
        for _ in 0..<8 {
            let memory = try GuestMemory(ranges: [(0, 6 << 20), (1 << 32, 4 << 20)])
            for region in memory.regions {
                #expect(region.hostAddress % UInt(GuestMemory.hugePageSize) == 0)
            }
            try memory.write([1, 2, 3], at: (6 << 20) - 3)
            try memory.write([4, 5, 6], at: (1 << 32) + (4 << 20) - 3)
            #expect(try memory.read(at: (1 << 32) + (4 << 20) - 3, count: 3) == [4, 5, 6])
        }
    }

    @Test("integers round-trip little-endian at unaligned addresses")
    func loadStore() throws {
        let memory = try GuestMemory(ranges: [(0, 64 << 10)])
        try memory.store(UInt32(0xDEAD_BEEF), at: 0x1001)
        #expect(try memory.load(UInt32.self, at: 0x1001) == 0xDEAD_BEEF)
        #expect(try memory.read(at: 0x1001, count: 4) == [0xEF, 0xBE, 0xAD, 0xDE])
        try memory.write([1, 2, 3], at: 0xFFFD)
        #expect(try memory.read(at: 0xFFFD, count: 3) == [1, 2, 3])
        try memory.zero(at: 0xFFFD, count: 3)
        #expect(try memory.read(at: 0xFFFD, count: 3) == [0, 0, 0])
    }

    @Test(
        "ranges outside RAM, across its end or wrapping around are refused",
        arguments: [
            (UInt64(64 << 10), 1),  // just past the end
            (UInt64(64 << 10) - 2, 4),  // straddles the end
            (UInt64.max, 1),  // far away
            (UInt64.max - 1, 8),  // would wrap
            (UInt64(0), -1),  // negative length
        ])
    func outOfRange(address: UInt64, count: Int) throws {
        let memory = try GuestMemory(ranges: [(0, 64 << 10)])
        #expect(throws: GuestMemoryError.outOfRange(address: address, count: count)) {
            _ = try memory.buffer(at: address, count: count)
        }
        #expect(!memory.contains(address: address, count: count))
    }

    @Test("an access may not span two regions even when both are RAM")
    func noCrossRegionAccess() throws {
        let memory = try GuestMemory(ranges: [(0, 0x1000), (0x1000, 0x1000)])
        #expect(memory.contains(address: 0xFFC, count: 4))
        #expect(!memory.contains(address: 0xFFE, count: 4))
        #expect(throws: GuestMemoryError.self) { try memory.store(UInt32(1), at: 0xFFE) }
    }

    @Test("the MMIO hole is not RAM")
    func holeIsNotRAM() throws {
        let memory = try GuestMemory(ranges: [(0, 0x1000), (0x10000, 0x1000)])
        #expect(memory.region(containing: 0x8000) == nil)
        #expect(throws: GuestMemoryError.self) { _ = try memory.read(at: 0x8000, count: 1) }
    }

    @Test("unaligned, empty, overlapping or wrapping layouts are refused")
    func invalidLayouts() {
        #expect(throws: GuestMemoryError.self) { try GuestMemory(ranges: [(0x10, 0x1000)]) }
        #expect(throws: GuestMemoryError.self) { try GuestMemory(ranges: [(0, 0)]) }
        #expect(throws: GuestMemoryError.self) { try GuestMemory(ranges: [(0, 0x2000), (0x1000, 0x1000)]) }
        #expect(throws: GuestMemoryError.self) { try GuestMemory(ranges: [(UInt64.max - 0xFFF, 0x2000)]) }
        #expect(throws: GuestMemoryError.self) { try GuestMemory(x86MiB: 0) }
    }

    @Test("errors name the failing range")
    func errorText() {
        let error = GuestMemoryError.outOfRange(address: 0xC000_0000, count: 16)
        #expect(error.description == "guest memory range 0xc0000000 + 16 bytes is outside guest RAM")
    }
}
