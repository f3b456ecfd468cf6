import Testing

@testable import PCI

@Suite("MSI-X table")
struct MSIXTableTests {
    let signaler = RecordingSignaler()

    // MARK: - Helpers

    func read(_ table: MSIXTable, _ offset: Int, count: Int = 4) -> UInt64 {
        var bytes = [UInt8](repeating: 0xA5, count: count)
        bytes.withUnsafeMutableBytes { table.readTable(offset: offset, data: $0) }
        return bytes.enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
    }

    func write(_ table: MSIXTable, _ offset: Int, _ value: UInt64, count: Int = 4) {
        let bytes = (0..<count).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
        bytes.withUnsafeBytes { table.writeTable(offset: offset, data: $0) }
    }

    func pba(_ table: MSIXTable, _ offset: Int = 0, count: Int = 8) -> UInt64 {
        var bytes = [UInt8](repeating: 0xA5, count: count)
        bytes.withUnsafeMutableBytes { table.readPBA(offset: offset, data: $0) }
        return bytes.enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
    }

    /// Programs entry `vector` with a message, leaving its mask bit as `masked`.
    func program(_ table: MSIXTable, _ vector: Int, address: UInt64, data: UInt32, masked: Bool) {
        let base = vector * 16
        write(table, base, address & 0xFFFF_FFFF)
        write(table, base + 4, address >> 32)
        write(table, base + 8, UInt64(data))
        write(table, base + 12, masked ? 1 : 0)
    }

    static let enable: UInt16 = 0x8000
    static let functionMask: UInt16 = 0x4000

    // MARK: - Tests

    @Test("nothing is delivered, or left pending, while MSI-X is disabled")
    func disabled() {
        let table = MSIXTable(vectors: 4, signaler: signaler)
        program(table, 1, address: 0xFEE0_0000, data: 0x41, masked: false)
        #expect(!table.isEnabled)
        table.trigger(1)
        #expect(signaler.messages.isEmpty)
        #expect(pba(table) == 0)
        table.updateControl(Self.enable)
        #expect(table.isEnabled)
        #expect(signaler.messages.isEmpty)
        table.trigger(1)
        #expect(signaler.messages == [MSIMessage(address: 0xFEE0_0000, data: 0x41)])
        #expect(signaler.vectors == [1])
        table.updateControl(0)
        #expect(!table.isEnabled)
        table.trigger(1)
        #expect(signaler.messages.count == 1)
    }

    @Test("entries start masked and zeroed")
    func resetState() {
        let table = MSIXTable(vectors: 3, signaler: signaler)
        for vector in 0..<3 {
            #expect(read(table, vector * 16 + 0) == 0)
            #expect(read(table, vector * 16 + 4) == 0)
            #expect(read(table, vector * 16 + 8) == 0)
            #expect(read(table, vector * 16 + 12) == 1)
        }
    }

    @Test("a masked vector sets its pending bit; unmasking delivers the message once and clears it")
    func maskedVectorPends() {
        let table = MSIXTable(vectors: 4, signaler: signaler)
        table.updateControl(Self.enable)
        program(table, 2, address: 0x0000_0001_FEE0_1000, data: 0x4021, masked: true)
        table.trigger(2)
        table.trigger(2)
        #expect(signaler.messages.isEmpty)
        #expect(pba(table) == 0b100)
        #expect(pba(table, count: 4) == 0b100)

        write(table, 2 * 16 + 12, 0)  // unmask
        #expect(signaler.messages == [MSIMessage(address: 0x1_FEE0_1000, data: 0x4021)])
        #expect(pba(table) == 0)
        write(table, 2 * 16 + 12, 0)  // unmasking again delivers nothing more
        #expect(signaler.messages.count == 1)

        table.trigger(2)
        #expect(signaler.messages.count == 2)
        #expect(pba(table) == 0)
    }

    @Test("the function mask holds every vector pending until it is cleared")
    func functionMask() {
        let table = MSIXTable(vectors: 4, signaler: signaler)
        program(table, 0, address: 0xFEE0_0000, data: 0x30, masked: false)
        program(table, 3, address: 0xFEE0_2000, data: 0x33, masked: false)
        program(table, 1, address: 0xFEE0_1000, data: 0x31, masked: true)
        table.updateControl(Self.enable | Self.functionMask)
        table.trigger(3)
        table.trigger(0)
        table.trigger(1)
        #expect(signaler.messages.isEmpty)
        #expect(pba(table) == 0b1011)

        table.updateControl(Self.enable)
        // Vectors 0 and 3 fire (in vector order); 1 is still masked by its own bit.
        #expect(
            signaler.messages == [
                MSIMessage(address: 0xFEE0_0000, data: 0x30), MSIMessage(address: 0xFEE0_2000, data: 0x33),
            ])
        #expect(signaler.vectors == [0, 3])
        #expect(pba(table) == 0b0010)
    }

    @Test("pending messages stay pending while MSI-X is disabled, and fire when it is enabled")
    func pendingAcrossDisable() {
        let table = MSIXTable(vectors: 2, signaler: signaler)
        table.updateControl(Self.enable)
        program(table, 0, address: 0xFEE0_0000, data: 0x22, masked: true)
        table.trigger(0)
        table.updateControl(0)
        write(table, 12, 0)
        #expect(signaler.messages.isEmpty)
        table.updateControl(Self.enable)
        #expect(signaler.messages == [MSIMessage(address: 0xFEE0_0000, data: 0x22)])
    }

    @Test("table entries accept 4- and 8-byte accesses; the vector control keeps only the mask bit")
    func tableAccessSizes() {
        let table = MSIXTable(vectors: 2, signaler: signaler)
        write(table, 16, 0x0000_0001_FEE0_300C, count: 8)
        #expect(read(table, 16) == 0xFEE0_300C)
        #expect(read(table, 20) == 0x1)
        #expect(read(table, 16, count: 8) == 0x0000_0001_FEE0_300C)
        write(table, 24, 0xFFFF_FFFF_0000_4055, count: 8)
        #expect(read(table, 24) == 0x4055)
        #expect(read(table, 28) == 0x1)
        #expect(read(table, 24, count: 8) == 0x0000_0001_0000_4055)
        write(table, 28, 0xFFFF_FFFE)
        #expect(read(table, 28) == 0)
        // Entry 0 is untouched.
        #expect(read(table, 0, count: 8) == 0)
        #expect(read(table, 8, count: 8) == 0x1_0000_0000)
    }

    @Test("byte and word table accesses read all ones and are ignored", arguments: [1, 2])
    func narrowAccess(count: Int) {
        let table = MSIXTable(vectors: 2, signaler: signaler)
        #expect(read(table, 8, count: count) == UInt64.max >> (64 - 8 * count))
        write(table, 8, 0xFFFF, count: count)
        #expect(read(table, 8) == 0)
    }

    @Test("vectors and table offsets beyond the table are ignored")
    func outOfRange() {
        let table = MSIXTable(vectors: 2, signaler: signaler)
        table.updateControl(Self.enable)
        table.trigger(-1)
        table.trigger(2)
        table.trigger(Int.max)
        #expect(signaler.messages.isEmpty)
        #expect(pba(table) == 0)
        #expect(read(table, 32) == 0xFFFF_FFFF)
        #expect(read(table, 32, count: 8) == UInt64.max)
        write(table, 32, 0)
        write(table, 44, 0)
        write(table, 0x10000, 0)
        #expect(read(table, 12) == 1)
        #expect(read(table, 28) == 1)
    }

    @Test("the PBA covers all vectors in qwords, with dword reads of either half")
    func pendingBitArray() {
        let table = MSIXTable(vectors: 70, signaler: signaler)
        #expect(table.tableSize == 70 * 16)
        #expect(table.pbaSize == 16)
        table.updateControl(Self.enable)
        for vector in [0, 33, 63, 64, 69] { table.trigger(vector) }
        #expect(pba(table, 0) == UInt64(1) << 63 | UInt64(1) << 33 | 1)
        #expect(pba(table, 0, count: 4) == 1)
        #expect(pba(table, 4, count: 4) == UInt64(1) << 31 | 1 << 1)
        #expect(pba(table, 8) == UInt64(1) << 5 | 1)
        #expect(pba(table, 16) == 0)
    }

    @Test(
        "the capability body encodes the table size minus one and offset|BIR for table and PBA",
        arguments: [(1, UInt8(0)), (3, 2), (2048, 5)])
    func capabilityBody(vectors: Int, bar: UInt8) {
        let table = MSIXTable(vectors: vectors, signaler: signaler)
        let body = table.capabilityBody(bar: bar, tableOffset: 0x4000, pbaOffset: 0x6000)
        let control = UInt16(vectors - 1)
        #expect(body.count == 10)
        #expect(body[0...1] == [UInt8(control & 0xFF), UInt8(control >> 8)])
        #expect(body[2...5] == [bar, 0x40, 0, 0])
        #expect(body[6...9] == [bar, 0x60, 0, 0])
        #expect(table.vectorCount == vectors)
        #expect(table.pbaSize == (vectors + 63) / 64 * 8)
    }
}
