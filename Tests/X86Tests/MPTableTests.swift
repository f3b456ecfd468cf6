import Testing

@testable import X86

/// An MP configuration table entry, decoded from its bytes by its type (MP spec 1.4, chapter 4).
enum MPEntry: Equatable {
    case processor(apicID: UInt8, apicVersion: UInt8, flags: UInt8)
    case bus(id: UInt8, type: String)
    case ioAPIC(id: UInt8, version: UInt8, flags: UInt8, address: UInt32)
    case ioInterrupt(type: UInt8, flags: UInt16, sourceBus: UInt8, sourceIRQ: UInt8, ioAPIC: UInt8, pin: UInt8)
    case localInterrupt(type: UInt8, flags: UInt16, sourceBus: UInt8, sourceIRQ: UInt8, localAPIC: UInt8, lint: UInt8)
}

struct UnknownMPEntry: Error {
    let type: UInt8
    let offset: Int
}

/// The MP floating pointer, configuration header and entries of a built table.
struct ParsedMPTable {
    let bytes: [UInt8]
    var floating: ArraySlice<UInt8> { bytes[0..<16] }
    var config: ArraySlice<UInt8> { bytes[16...] }
    let entries: [MPEntry]

    init(_ bytes: [UInt8]) throws {
        self.bytes = bytes
        var entries: [MPEntry] = []
        var offset = 16 + 44
        while offset < bytes.count {
            let type = bytes[offset]
            switch type {
            case 0:
                try #require(offset + 20 <= bytes.count)
                entries.append(
                    .processor(apicID: bytes[offset + 1], apicVersion: bytes[offset + 2], flags: bytes[offset + 3]))
                offset += 20
            case 1...4:
                try #require(offset + 8 <= bytes.count)
                let e = Array(bytes[offset..<(offset + 8)])
                let flags = UInt16(e[2]) | UInt16(e[3]) << 8
                switch type {
                case 1: entries.append(.bus(id: e[1], type: String(decoding: e[2..<8], as: UTF8.self)))
                case 2:
                    entries.append(
                        .ioAPIC(id: e[1], version: e[2], flags: e[3], address: e.loadLE(UInt32.self, at: 4)!))
                case 3:
                    entries.append(
                        .ioInterrupt(
                            type: e[1], flags: flags, sourceBus: e[4], sourceIRQ: e[5], ioAPIC: e[6], pin: e[7]))
                default:
                    entries.append(
                        .localInterrupt(
                            type: e[1], flags: flags, sourceBus: e[4], sourceIRQ: e[5], localAPIC: e[6], lint: e[7]))
                }
                offset += 8
            default:
                throw UnknownMPEntry(type: type, offset: offset)
            }
        }
        self.entries = entries
    }

    static func sum(_ bytes: some Collection<UInt8>) -> UInt8 { bytes.reduce(0, &+) }
}

@Suite("MP table")
struct MPTableTests {
    static let address = LinuxLoader.mpTableAddress

    @Test("the floating pointer is \"_MP_\" at offset 0, points just past itself and sums to zero", arguments: [1, 4])
    func floatingPointer(cpus: Int) throws {
        let table = try MPTable.build(cpus: cpus, at: Self.address)
        #expect(Array(table[0..<4]) == Array("_MP_".utf8))
        #expect(table.loadLE(UInt32.self, at: 4) == UInt32(Self.address + 16))
        #expect(table[8] == 1)  // length in 16-byte paragraphs
        #expect(table[9] == 4)  // spec revision 1.4
        #expect(table[11] == 0)  // MP feature byte 1: a configuration table is present
        #expect(ParsedMPTable.sum(table[0..<16]) == 0)
    }

    @Test(
        "the physical pointer follows the table wherever it is placed", arguments: [UInt64(0x9_FC00), 0xF_0000, 0x1000])
    func placement(address: UInt64) throws {
        let table = try MPTable.build(cpus: 2, at: address)
        #expect(table.loadLE(UInt32.self, at: 4) == UInt32(address + 16))
        #expect(ParsedMPTable.sum(table[0..<16]) == 0)
    }

    @Test(
        "the PCMP header gives the table's length and entry count, and its checksum sums to zero",
        arguments: [1, 4])
    func configHeader(cpus: Int) throws {
        let table = try MPTable.build(cpus: cpus, at: Self.address)
        let config = Array(table[16...])
        let parsed = try ParsedMPTable(table)
        #expect(Array(config[0..<4]) == Array("PCMP".utf8))
        #expect(config.loadLE(UInt16.self, at: 4).map(Int.init) == config.count)
        #expect(config[6] == 4)  // spec revision 1.4
        #expect(ParsedMPTable.sum(config) == 0)
        #expect(config.loadLE(UInt16.self, at: 34).map(Int.init) == parsed.entries.count)
        #expect(config.loadLE(UInt32.self, at: 36) == 0xFEE0_0000)  // local APIC address
        #expect(config.loadLE(UInt16.self, at: 40) == 0)  // no extended table
        // Entries: processors, one bus, one IOAPIC, 24 I/O interrupts, 2 local interrupts.
        #expect(parsed.entries.count == cpus + 1 + 1 + 24 + 2)
    }

    @Test("one enabled processor entry per CPU with APIC IDs 0..<n, and only CPU 0 is the BSP", arguments: [1, 4])
    func processors(cpus: Int) throws {
        let parsed = try ParsedMPTable(MPTable.build(cpus: cpus, at: Self.address))
        let processors = parsed.entries.compactMap { entry -> (UInt8, UInt8)? in
            if case .processor(let id, _, let flags) = entry { return (id, flags) }
            return nil
        }
        #expect(processors.map(\.0) == (0..<cpus).map { UInt8($0) })
        #expect(processors.allSatisfy { $0.1 & 0x01 != 0 })  // enabled
        #expect(processors.filter { $0.1 & 0x02 != 0 }.map(\.0) == [0])  // bootstrap processor
    }

    @Test("bus 0 is ISA and the IOAPIC at 0xFEC00000 takes the first APIC ID after the CPUs", arguments: [1, 4])
    func busAndIOAPIC(cpus: Int) throws {
        let parsed = try ParsedMPTable(MPTable.build(cpus: cpus, at: Self.address))
        #expect(parsed.entries.contains(.bus(id: 0, type: "ISA   ")))
        let ioapics = parsed.entries.compactMap { entry -> (UInt8, UInt8, UInt32)? in
            if case .ioAPIC(let id, _, let flags, let address) = entry { return (id, flags, address) }
            return nil
        }
        try #require(ioapics.count == 1)
        #expect(ioapics[0].0 == UInt8(cpus))
        #expect(ioapics[0].1 & 0x01 == 0x01)  // usable
        #expect(ioapics[0].2 == 0xFEC0_0000)
    }

    @Test("24 I/O interrupt entries route ISA IRQ n to IOAPIC pin n as ordinary interrupts", arguments: [1, 4])
    func ioInterrupts(cpus: Int) throws {
        let parsed = try ParsedMPTable(MPTable.build(cpus: cpus, at: Self.address))
        let interrupts = parsed.entries.compactMap { entry -> MPEntry? in
            if case .ioInterrupt = entry { return entry }
            return nil
        }
        #expect(
            interrupts
                == (0..<24).map {
                    .ioInterrupt(type: 0, flags: 0, sourceBus: 0, sourceIRQ: $0, ioAPIC: UInt8(cpus), pin: $0)
                })
    }

    @Test("ExtINT reaches LINT0 of APIC 0 and NMI reaches LINT1 of every APIC", arguments: [1, 4])
    func localInterrupts(cpus: Int) throws {
        let parsed = try ParsedMPTable(MPTable.build(cpus: cpus, at: Self.address))
        let lints = parsed.entries.filter {
            if case .localInterrupt = $0 { return true }
            return false
        }
        #expect(
            lints == [
                .localInterrupt(type: 3, flags: 0, sourceBus: 0, sourceIRQ: 0, localAPIC: 0, lint: 0),
                .localInterrupt(type: 1, flags: 0, sourceBus: 0, sourceIRQ: 0, localAPIC: 0xFF, lint: 1),
            ])
    }

    @Test("entries come in the order the MP spec requires: processors, buses, IOAPICs, interrupts")
    func entryOrder() throws {
        let parsed = try ParsedMPTable(MPTable.build(cpus: 3, at: Self.address))
        let order = parsed.entries.map { entry -> Int in
            switch entry {
            case .processor: 0
            case .bus: 1
            case .ioAPIC: 2
            case .ioInterrupt: 3
            case .localInterrupt: 4
            }
        }
        #expect(order == order.sorted())
    }

    @Test("the table for maxCPUs CPUs fits in the 1 KiB reserved for it")
    func maxCPUsFit() throws {
        let table = try MPTable.build(cpus: MPTable.maxCPUs, at: Self.address)
        #expect(table.count <= 0x400)
        let parsed = try ParsedMPTable(table)
        #expect(parsed.entries.count == MPTable.maxCPUs + 28)
        #expect(ParsedMPTable.sum(table[16...]) == 0)
    }

    @Test("0 CPUs and more than maxCPUs (32) are refused", arguments: [0, -1, 33, 38, 255])
    func refusedCounts(cpus: Int) {
        #expect(throws: LoaderError.self) { _ = try MPTable.build(cpus: cpus, at: Self.address) }
    }
}
