/// Minimal ACPI tables for a hardware-reduced platform: RSDP → XSDT → FADT (with a DSDT that
/// declares the S5 soft-off state) and MADT (CPUs and the IOAPIC).
///
/// They give the guest a way to power off (writing S5 to the FADT's sleep control register,
/// which the VMM watches at ``sleepControlPort``) and a CPU list; PCI stays on configuration
/// mechanism #1 (the command line carries `pci=noacpi`, so no host bridge needs describing in AML).
public enum ACPITables {
    /// Where the RSDP goes: the BIOS read-only area Linux scans (0xE0000-0xFFFFF).
    public static let rsdpAddress: UInt64 = 0xE_0000
    /// The I/O port of the FADT's sleep control and status registers (one byte each).
    public static let sleepControlPort: UInt16 = 0x3C0
    public static let sleepStatusPort: UInt16 = 0x3C1
    /// The S5 sleep type the DSDT declares; the guest writes `(5 << 2) | 0x20` to power off.
    public static let s5SleepType: UInt8 = 5
    /// SLP_EN in the sleep control register.
    public static let sleepEnable: UInt8 = 0x20
    static let oemID = Array("VMTOOL".utf8)
    static let oemTableID = Array("VMMACPI ".utf8)

    /// The tables, laid out from ``rsdpAddress``: returns the bytes to copy there.
    public static func build(cpus: Int) -> [UInt8] {
        let base = rsdpAddress
        let rsdpSize = 36
        let xsdtAddress = base + 0x40
        let xsdtSize = 36 + 2 * 8
        let fadtAddress = xsdtAddress + 0x40
        let fadt = fadtTable(dsdt: fadtAddress + 0x200)
        let dsdtAddress = fadtAddress + 0x200
        let dsdt = dsdtTable()
        let madtAddress = dsdtAddress + 0x100
        let madt = madtTable(cpus: cpus)

        var xsdt = header(signature: "XSDT", length: xsdtSize, revision: 1)
        xsdt += le(fadtAddress, 8) + le(madtAddress, 8)
        finish(&xsdt)

        var rsdp =
            Array("RSD PTR ".utf8) + [0] + oemID + [2] + le(0, 4) + le(UInt64(rsdpSize), 4) + le(xsdtAddress, 8) + [
                0, 0, 0, 0,
            ]
        rsdp[8] = checksum(rsdp[0..<20])
        rsdp[32] = checksum(rsdp[0..<36])

        var out = [UInt8](repeating: 0, count: Int(madtAddress - base) + madt.count)
        place(rsdp, at: 0, in: &out)
        place(xsdt, at: Int(xsdtAddress - base), in: &out)
        place(fadt, at: Int(fadtAddress - base), in: &out)
        place(dsdt, at: Int(dsdtAddress - base), in: &out)
        place(madt, at: Int(madtAddress - base), in: &out)
        return out
    }

    // MARK: - Tables

    /// FADT revision 6 (276 bytes), hardware-reduced, with the sleep registers in I/O space.
    static func fadtTable(dsdt: UInt64) -> [UInt8] {
        var table = header(signature: "FACP", length: 276, revision: 6)
        table += [UInt8](repeating: 0, count: 276 - 36)
        put(le(UInt64(9), 2), at: 46, in: &table)  // SCI_INT
        put(le(UInt64(0x2), 2), at: 109, in: &table)  // IAPC_BOOT_ARCH: 8042 present
        // Flags: HW_REDUCED_ACPI (20), and RESET/sleep via the registers below.
        put(le(UInt64(1 << 20), 4), at: 112, in: &table)
        table[131] = 3  // FADT minor version (6.3)
        put(le(dsdt, 8), at: 140, in: &table)  // X_DSDT
        put(gas(port: sleepControlPort), at: 244, in: &table)  // SLEEP_CONTROL_REG
        put(gas(port: sleepStatusPort), at: 256, in: &table)  // SLEEP_STATUS_REG
        put(Array("VMTOOLS ".utf8), at: 268, in: &table)  // hypervisor vendor identity
        finish(&table)
        return table
    }

    /// DSDT whose AML is `Name (_S5, Package () { 5, 0 })`.
    static func dsdtTable() -> [UInt8] {
        let aml: [UInt8] = [0x08, 0x5F, 0x53, 0x35, 0x5F, 0x12, 0x05, 0x02, 0x0A, s5SleepType, 0x00]
        var table = header(signature: "DSDT", length: 36 + aml.count, revision: 2)
        table += aml
        finish(&table)
        return table
    }

    /// MADT: one enabled local APIC per CPU (APIC ID = index), the IOAPIC at GSI base 0.
    static func madtTable(cpus: Int) -> [UInt8] {
        var body = le(UInt64(MPTable.localAPICAddress), 4) + le(1, 4)  // PCAT_COMPAT: dual 8259s present
        for cpu in 0..<cpus {
            body += [0, 8, UInt8(cpu), UInt8(cpu)] + le(1, 4)
        }
        body += [1, 12, UInt8(cpus), 0] + le(UInt64(MPTable.ioAPICAddress), 4) + le(0, 4)
        var table = header(signature: "APIC", length: 36 + body.count, revision: 5)
        table += body
        finish(&table)
        return table
    }

    // MARK: - Encoding

    /// The 36-byte common header (checksum filled by ``finish(_:)``).
    static func header(signature: String, length: Int, revision: UInt8) -> [UInt8] {
        Array(signature.utf8) + le(UInt64(length), 4) + [revision, 0] + oemID + oemTableID + le(1, 4)
            + Array("VMTL".utf8) + le(1, 4)
    }

    /// Sets the header's length to the table's size and fixes its checksum.
    static func finish(_ table: inout [UInt8]) {
        put(le(UInt64(table.count), 4), at: 4, in: &table)
        table[9] = 0
        table[9] = checksum(table[...])
    }

    /// A Generic Address Structure for a one-byte I/O port register.
    static func gas(port: UInt16) -> [UInt8] {
        [1, 8, 0, 1] + le(UInt64(port), 8)
    }

    static func checksum(_ bytes: ArraySlice<UInt8>) -> UInt8 { 0 &- bytes.reduce(0, &+) }

    static func le(_ value: UInt64, _ count: Int) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
    }

    static func put(_ bytes: [UInt8], at offset: Int, in table: inout [UInt8]) {
        table.replaceSubrange(offset..<(offset + bytes.count), with: bytes)
    }

    static func place(_ bytes: [UInt8], at offset: Int, in out: inout [UInt8]) {
        out.replaceSubrange(offset..<(offset + bytes.count), with: bytes)
    }
}
