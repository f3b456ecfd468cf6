import GuestMemory
import Testing

@testable import X86

@Suite("Long-mode boot tables")
struct LongModeTableTests {
    @Test("GDT entries match the descriptors Linux's boot code expects")
    func gdtEncoding() {
        #expect(SegmentDescriptor.code64.encoded == 0x00AF_9B00_0000_FFFF)
        #expect(SegmentDescriptor.data.encoded == 0x00CF_9300_0000_FFFF)
        #expect(SegmentDescriptor.tss.encoded == 0x008F_8B00_0000_FFFF)
        let cs = SegmentDescriptor.code64.segment(selector: 8)
        #expect(cs.l == 1 && cs.db == 0 && cs.present == 1 && cs.type == 0xB && cs.limit == 0xFFFF_FFFF)
    }

    @Test("page tables identity-map the first 4 GiB with 2 MiB pages")
    func identityMap() throws {
        let memory = try GuestMemory(ranges: [(0, 1 << 20)])
        try LongMode.writeTables(into: memory)
        #expect(try memory.load(UInt64.self, at: LongModeLayout.pml4Address) == LongModeLayout.pdptAddress | 3)
        for gib in UInt64(0)..<4 {
            let pdpte = try memory.load(UInt64.self, at: LongModeLayout.pdptAddress + gib * 8)
            #expect(pdpte == (LongModeLayout.pdAddress + gib * 0x1000) | 3)
        }
        // The last 2 MiB page below 4 GiB maps itself.
        let last = try memory.load(UInt64.self, at: LongModeLayout.pdAddress + 3 * 0x1000 + 511 * 8)
        #expect(last == 0xFFE0_0000 | 0x83)
        #expect(try memory.load(UInt64.self, at: LongModeLayout.pdptAddress + 4 * 8) == 0)
    }
}
