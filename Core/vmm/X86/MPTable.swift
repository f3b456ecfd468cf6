import GuestMemory

/// The Intel MultiProcessor table (MP spec 1.4) that tells a kernel booted without ACPI how many
/// CPUs there are, where the IOAPIC is, and how ISA interrupts reach it.
public enum MPTable {
    public static let localAPICAddress: UInt32 = 0xFEE0_0000
    public static let ioAPICAddress: UInt32 = 0xFEC0_0000
    /// IOAPIC pins (KVM's in-kernel IOAPIC has 24).
    public static let ioAPICPins: UInt8 = 24
    /// The most CPUs whose entries fit in the table's 1 KiB.
    public static let maxCPUs = 32
    static let apicVersion: UInt8 = 0x14
    static let ioAPICVersion: UInt8 = 0x11

    /// The table bytes for `cpus` CPUs with APIC IDs 0..<cpus, to be placed at `address`.
    public static func build(cpus: Int, at address: UInt64) throws(LoaderError) -> [UInt8] {
        guard (1...maxCPUs).contains(cpus) else {
            throw .unsupported("\(cpus) vCPUs; the MP table allows 1 to \(maxCPUs)")
        }
        let ioAPICID = UInt8(cpus)
        var entries: [UInt8] = []
        var count: UInt16 = 0

        for cpu in 0..<cpus {
            var processor = [UInt8](repeating: 0, count: 20)
            processor[0] = 0  // processor entry
            processor[1] = UInt8(cpu)  // local APIC ID
            processor[2] = apicVersion
            processor[3] = 0x01 | (cpu == 0 ? 0x02 : 0)  // enabled, bootstrap processor
            processor.storeLE(UInt32(0x600), at: 4)  // family 6 signature
            processor.storeLE(UInt32(0x201), at: 8)  // features: FPU, APIC
            entries += processor
            count += 1
        }
        entries += [1, 0] + Array("ISA   ".utf8)  // bus 0 is ISA
        count += 1
        var ioapic: [UInt8] = [2, ioAPICID, ioAPICVersion, 0x01, 0, 0, 0, 0]
        ioapic.storeLE(ioAPICAddress, at: 4)
        entries += ioapic
        count += 1
        // ISA IRQ n reaches IOAPIC pin n as an ordinary interrupt. (Declaring pin 0 ExtINT
        // sends Linux down a legacy path that KVM's IOAPIC does not wire, and it oopses.)
        for irq in 0..<ioAPICPins {
            entries += [3, 0, 0, 0, 0, irq, ioAPICID, irq]
            count += 1
        }
        // LINT0 of the bootstrap processor: ExtINT from the PIC; LINT1 of every CPU: NMI.
        entries += [4, 3, 0, 0, 0, 0, 0, 0]
        entries += [4, 1, 0, 0, 0, 0, 0xFF, 1]
        count += 2

        let configAddress = address + 16
        var header = [UInt8](repeating: 0, count: 44)
        header.replaceSubrange(0..<4, with: Array("PCMP".utf8))
        header.storeLE(UInt16(44 + entries.count), at: 4)
        header[6] = 4  // spec revision 1.4
        header.replaceSubrange(8..<16, with: Array("VMTOOLS ".utf8))
        header.replaceSubrange(16..<28, with: Array("vmm         ".utf8))
        header.storeLE(count, at: 34)
        header.storeLE(localAPICAddress, at: 36)
        var config = header + entries
        config[7] = checksum(config)

        var floating = [UInt8](repeating: 0, count: 16)
        floating.replaceSubrange(0..<4, with: Array("_MP_".utf8))
        floating.storeLE(UInt32(configAddress), at: 4)
        floating[8] = 1  // length in 16-byte units
        floating[9] = 4  // spec revision 1.4
        floating[10] = checksum(floating)
        let table = floating + config
        guard table.count <= 0x400 else { throw .unsupported("\(cpus) vCPUs do not fit the MP table's 1 KiB") }
        return table
    }

    /// The byte that makes `bytes` sum to zero.
    static func checksum(_ bytes: [UInt8]) -> UInt8 {
        0 &- bytes.reduce(0, &+)
    }
}
