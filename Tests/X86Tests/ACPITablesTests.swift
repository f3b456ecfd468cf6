import Testing

@testable import X86

@Suite("ACPI tables")
struct ACPITablesTests {
    /// The bytes of the table at guest-physical `address` inside `blob` (which starts at the RSDP).
    func table(at address: UInt64, in blob: [UInt8]) -> [UInt8] {
        let offset = Int(address - ACPITables.rsdpAddress)
        let length = Int(le(blob, offset + 4, 4))
        return Array(blob[offset..<(offset + length)])
    }

    func le(_ bytes: [UInt8], _ offset: Int, _ count: Int) -> UInt64 {
        (0..<count).reduce(UInt64(0)) { $0 | UInt64(bytes[offset + $1]) << (8 * UInt64($1)) }
    }

    func sumsToZero(_ bytes: some Sequence<UInt8>) -> Bool { bytes.reduce(0, &+) == 0 }

    @Test("the RSDP is version 2 with valid checksums and points to the XSDT")
    func rsdp() {
        let blob = ACPITables.build(cpus: 2)
        #expect(Array(blob[0..<8]) == Array("RSD PTR ".utf8))
        #expect(blob[15] == 2)
        #expect(sumsToZero(blob[0..<20]))
        #expect(sumsToZero(blob[0..<36]))
        let xsdt = table(at: le(blob, 24, 8), in: blob)
        #expect(Array(xsdt[0..<4]) == Array("XSDT".utf8))
    }

    @Test("every table has a valid checksum and the XSDT lists the FADT and the MADT", arguments: [1, 4, 32])
    func tables(cpus: Int) {
        let blob = ACPITables.build(cpus: cpus)
        let xsdt = table(at: le(blob, 24, 8), in: blob)
        #expect(sumsToZero(xsdt))
        #expect(xsdt.count == 36 + 16)
        let fadt = table(at: le(xsdt, 36, 8), in: blob)
        let madt = table(at: le(xsdt, 44, 8), in: blob)
        #expect(Array(fadt[0..<4]) == Array("FACP".utf8) && sumsToZero(fadt) && fadt.count == 276)
        #expect(Array(madt[0..<4]) == Array("APIC".utf8) && sumsToZero(madt))
        // MADT: one 8-byte local APIC entry per CPU, then one 12-byte IOAPIC entry.
        #expect(madt.count == 44 + 8 * cpus + 12)
        for cpu in 0..<cpus {
            let entry = 44 + 8 * cpu
            #expect(madt[entry] == 0 && madt[entry + 3] == UInt8(cpu) && madt[entry + 4] & 1 == 1)
        }
        let ioapic = 44 + 8 * cpus
        #expect(madt[ioapic] == 1 && le(madt, ioapic + 4, 4) == 0xFEC0_0000)
    }

    @Test("the FADT is hardware-reduced, with sleep registers at the VMM's I/O ports and a DSDT declaring S5")
    func fadtAndDSDT() {
        let blob = ACPITables.build(cpus: 1)
        let xsdt = table(at: le(blob, 24, 8), in: blob)
        let fadt = table(at: le(xsdt, 36, 8), in: blob)
        #expect(le(fadt, 112, 4) & (1 << 20) != 0)
        #expect(fadt[244] == 1 && le(fadt, 248, 8) == UInt64(ACPITables.sleepControlPort))
        #expect(fadt[256] == 1 && le(fadt, 260, 8) == UInt64(ACPITables.sleepStatusPort))
        let dsdt = table(at: le(fadt, 140, 8), in: blob)
        #expect(Array(dsdt[0..<4]) == Array("DSDT".utf8) && sumsToZero(dsdt))
        let aml = Array(dsdt[36...])
        #expect(aml == [0x08, 0x5F, 0x53, 0x35, 0x5F, 0x12, 0x05, 0x02, 0x0A, ACPITables.s5SleepType, 0x00])
    }

    @Test("the tables fit below 1 MiB for the most CPUs the VMM allows")
    func fitsInBIOSArea() {
        let blob = ACPITables.build(cpus: MPTable.maxCPUs)
        #expect(ACPITables.rsdpAddress + UInt64(blob.count) <= 0x10_0000)
    }
}
