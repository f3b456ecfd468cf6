import KVM
import Testing

@testable import X86

@Suite("CPUID for each vCPU")
struct CPUIDTests {
    /// A plausible `KVM_GET_SUPPORTED_CPUID` answer, with recognisable bits in every register.
    static let supported: [CPUIDEntry] = [
        CPUIDEntry(function: 0, eax: 0x1F, ebx: 0x756E_6547, ecx: 0x6C65_746E, edx: 0x4965_6E69),
        CPUIDEntry(function: 1, eax: 0x0008_06F8, ebx: 0xAB3C_5678, ecx: 0x7FFA_3203, edx: 0x178B_FBFF),
        CPUIDEntry(function: 0xA, eax: 0x0830_8004, ebx: 0x0000_00FF, ecx: 0x0000_00FF, edx: 0x0000_8603),
        CPUIDEntry(function: 0xB, index: 0, flags: 1, eax: 0x1, ebx: 0x2, ecx: 0x100, edx: 0x55),
        CPUIDEntry(function: 0xB, index: 1, flags: 1, eax: 0x7, ebx: 0x40, ecx: 0x201, edx: 0x55),
        CPUIDEntry(function: 0xB, index: 2, flags: 1, eax: 0x9, ebx: 0x9, ecx: 0x302, edx: 0x55),
        CPUIDEntry(function: 0x8000_0008, eax: 0x0000_3030, ebx: 0x1234, ecx: 0xFFFF_FFFF, edx: 0x77),
    ]

    /// (vCPU id, vCPU count, bits needed to number `count` cores).
    static let topologies: [(UInt32, UInt32, UInt32)] = [
        (0, 1, 0), (0, 2, 1), (1, 2, 1), (2, 3, 2), (3, 4, 2), (4, 5, 3), (7, 8, 3), (8, 9, 4), (31, 32, 5),
    ]

    func leaf(_ entries: [CPUIDEntry], _ function: UInt32, _ index: UInt32 = 0) throws -> CPUIDEntry {
        try #require(entries.first { $0.function == function && $0.index == index })
    }

    @Test("leaves keep their order, function, index and flags")
    func shape() {
        let result = VCPUSetup.cpuid(Self.supported, id: 1, count: 2)
        #expect(result.map(\.function) == Self.supported.map(\.function))
        #expect(result.map(\.index) == Self.supported.map(\.index))
        #expect(result.map(\.flags) == Self.supported.map(\.flags))
    }

    @Test("leaves the code does not adjust pass through unchanged")
    func untouched() throws {
        let result = VCPUSetup.cpuid(Self.supported, id: 3, count: 4)
        #expect(try leaf(result, 0) == Self.supported[0])
    }

    @Test("leaf 1 EBX[31:24] is the APIC ID and EBX[23:16] the logical processor count", arguments: topologies)
    func leaf1APICID(id: UInt32, count: UInt32, bits: UInt32) throws {
        let leaf1 = try leaf(VCPUSetup.cpuid(Self.supported, id: id, count: count), 1)
        #expect(leaf1.ebx >> 24 == id)
        #expect((leaf1.ebx >> 16) & 0xFF == count)
        #expect(leaf1.ebx & 0xFFFF == 0x5678)  // brand index, CLFLUSH size: kept
        #expect(leaf1.eax == 0x0008_06F8)
    }

    @Test("leaf 1 ECX[31] reports a hypervisor, and the other ECX bits are kept", arguments: topologies)
    func hypervisorBit(id: UInt32, count: UInt32, bits: UInt32) throws {
        let leaf1 = try leaf(VCPUSetup.cpuid(Self.supported, id: id, count: count), 1)
        #expect(leaf1.ecx & (1 << 31) != 0)
        #expect(leaf1.ecx & ~(1 << 31) == 0x7FFA_3203)
    }

    @Test("leaf 1 ECX[24] offers the TSC-deadline timer when KVM has it, and is left as reported otherwise")
    func tscDeadline() throws {
        var supported = Self.supported
        supported[1].ecx &= ~(1 << 24)  // as KVM_GET_SUPPORTED_CPUID reports it
        let offered = try leaf(VCPUSetup.cpuid(supported, id: 0, count: 2, tscDeadlineTimer: true), 1)
        #expect(offered.ecx & (1 << 24) != 0)
        #expect(offered.ecx & ~(1 << 24 | 1 << 31) == supported[1].ecx & ~(1 << 31))
        let plain = try leaf(VCPUSetup.cpuid(supported, id: 0, count: 2), 1)
        #expect(plain.ecx & (1 << 24) == 0)
    }

    @Test("leaf 1 EDX HTT is set only with more than one vCPU", arguments: [(UInt32(1), false), (2, true), (8, true)])
    func httBit(count: UInt32, set: Bool) throws {
        for edx in [UInt32(0x178B_FBFF), 0x078B_FBFF] {  // with and without HTT from KVM
            var supported = Self.supported
            supported[1].edx = edx
            let leaf1 = try leaf(VCPUSetup.cpuid(supported, id: 0, count: count), 1)
            #expect((leaf1.edx & (1 << 28) != 0) == set)
            #expect(leaf1.edx & ~(1 << 28) == 0x078B_FBFF)
        }
    }

    @Test("leaf 0xB: EDX is the x2APIC ID; subleaf 0 is one thread, subleaf 1 counts the cores", arguments: topologies)
    func extendedTopology(id: UInt32, count: UInt32, bits: UInt32) throws {
        let result = VCPUSetup.cpuid(Self.supported, id: id, count: count)
        let smt = try leaf(result, 0xB, 0)
        let core = try leaf(result, 0xB, 1)
        let beyond = try leaf(result, 0xB, 2)
        #expect([smt.edx, core.edx, beyond.edx] == [id, id, id])
        #expect(smt.eax == 0 && smt.ebx == 1 && smt.ecx == 0x100)
        #expect(core.eax == bits)
        #expect(core.ebx == count)
        #expect(core.ecx == 0x201)
        #expect(beyond.eax == 0 && beyond.ebx == 0 && beyond.ecx == 2)  // invalid level, index echoed
    }

    @Test("leaf 0x1F is adjusted like leaf 0xB")
    func leaf1F() throws {
        let supported = [
            CPUIDEntry(function: 0x1F, index: 0, eax: 1, ebx: 2, ecx: 0x100, edx: 9),
            CPUIDEntry(function: 0x1F, index: 1, eax: 7, ebx: 0x40, ecx: 0x201, edx: 9),
        ]
        let result = VCPUSetup.cpuid(supported, id: 2, count: 4)
        #expect(result[0] == CPUIDEntry(function: 0x1F, index: 0, eax: 0, ebx: 1, ecx: 0x100, edx: 2))
        #expect(result[1] == CPUIDEntry(function: 0x1F, index: 1, eax: 2, ebx: 4, ecx: 0x201, edx: 2))
    }

    @Test("leaf 0xA (architectural PMU) is zeroed", arguments: topologies)
    func noPMU(id: UInt32, count: UInt32, bits: UInt32) throws {
        let pmu = try leaf(VCPUSetup.cpuid(Self.supported, id: id, count: count), 0xA)
        #expect([pmu.eax, pmu.ebx, pmu.ecx, pmu.edx] == [0, 0, 0, 0])
    }

    @Test("leaf 0x80000008 ECX: NC = count - 1 and ApicIdSize = bits for count; other bits kept", arguments: topologies)
    func addressSizes(id: UInt32, count: UInt32, bits: UInt32) throws {
        let sizes = try leaf(VCPUSetup.cpuid(Self.supported, id: id, count: count), 0x8000_0008)
        #expect(sizes.ecx & 0xFF == count - 1)
        #expect((sizes.ecx >> 12) & 0xF == bits)
        #expect(sizes.ecx & ~0xF0FF == 0xFFFF_FFFF & ~0xF0FF)
        #expect(sizes.eax == 0x3030 && sizes.ebx == 0x1234 && sizes.edx == 0x77)
    }

    @Test("leaf 0x8000001E reports the APIC ID in EAX and EBX[7:0]")
    func amdTopology() throws {
        let supported = [CPUIDEntry(function: 0x8000_001E, eax: 0xFFFF_FFFF, ebx: 0xFFFF_FF00, ecx: 5, edx: 6)]
        let result = VCPUSetup.cpuid(supported, id: 3, count: 4)
        #expect(result == [CPUIDEntry(function: 0x8000_001E, eax: 3, ebx: 0xFFFF_FF03, ecx: 5, edx: 6)])
    }

    @Test("every vCPU of a machine gets a distinct APIC ID and the same core count")
    func distinctIDs() throws {
        let count: UInt32 = 4
        let leaves = try (0..<count).map { try leaf(VCPUSetup.cpuid(Self.supported, id: $0, count: count), 1) }
        #expect(Set(leaves.map { $0.ebx >> 24 }).count == Int(count))
        #expect(Set(leaves.map { ($0.ebx >> 16) & 0xFF }) == [count])
    }
}
