import Testing

@testable import PCI

@Suite("PCI configuration space")
struct PCIConfigSpaceTests {
    static func identity() -> PCIConfigSpace {
        PCIConfigSpace(
            vendor: 0x1AF4, device: 0x1042, classCode: 0x01_8002, revision: 0x05, subsystemVendor: 0x1D0F,
            subsystem: 0x0040)
    }

    @Test("identity fields read back at their offsets with 1-, 2- and 4-byte reads")
    func identityFields() {
        let config = Self.identity()
        // Dwords.
        #expect(config.read(offset: 0x00, count: 4) == 0x1042_1AF4)
        #expect(config.read(offset: 0x08, count: 4) == 0x0180_0205)
        #expect(config.read(offset: 0x2C, count: 4) == 0x0040_1D0F)
        // Words.
        #expect(config.read(offset: 0x00, count: 2) == 0x1AF4)
        #expect(config.read(offset: 0x02, count: 2) == 0x1042)
        #expect(config.read(offset: 0x0A, count: 2) == 0x0180)
        #expect(config.read(offset: 0x2C, count: 2) == 0x1D0F)
        #expect(config.read(offset: 0x2E, count: 2) == 0x0040)
        // Bytes.
        #expect(config.read(offset: 0x00, count: 1) == 0xF4)
        #expect(config.read(offset: 0x01, count: 1) == 0x1A)
        #expect(config.read(offset: 0x08, count: 1) == 0x05)  // revision
        #expect(config.read(offset: 0x09, count: 1) == 0x02)  // programming interface
        #expect(config.read(offset: 0x0A, count: 1) == 0x80)  // subclass
        #expect(config.read(offset: 0x0B, count: 1) == 0x01)  // base class
        #expect(config.read(offset: 0x0E, count: 1) == 0x00)  // header type 0
    }

    @Test(
        "read-only registers ignore guest writes",
        arguments: [0x00, 0x02, 0x06, 0x08, 0x0C, 0x2C, 0x2E, 0x30, 0x34, 0x3D, 0x3E, 0x40, 0x80, 0xFC])
    func readOnlyRegisters(offset: Int) {
        var config = Self.identity()
        let before = (0..<256).map { config.read(offset: $0, count: 1) }
        let count = offset % 4 == 0 ? 4 : (offset % 2 == 0 ? 2 : 1)
        let changed = config.write(offset: offset, count: count, value: 0xFFFF_FFFF)
        #expect(changed == false)
        #expect((0..<256).map { config.read(offset: $0, count: 1) } == before)
    }

    @Test("only the command register's I/O, memory, bus-master and INTx-disable bits are writable")
    func commandRegister() {
        var config = Self.identity()
        #expect(config.command == 0)
        #expect(!config.memoryEnabled)
        config.write(offset: 0x04, count: 2, value: 0xFFFF)
        #expect(config.read(offset: 0x04, count: 2) == 0x0407)
        #expect(config.command == 0x0407)
        #expect(config.memoryEnabled)
        config.write(offset: 0x04, count: 2, value: UInt32(PCIConfigSpace.commandBusMaster))
        #expect(config.command == PCIConfigSpace.commandBusMaster)
        #expect(!config.memoryEnabled)
        // A dword write over command and status changes only the command bits.
        config.write(offset: 0x04, count: 4, value: 0xFFFF_FFFF)
        #expect(config.read(offset: 0x04, count: 4) == 0x0000_0407)
        // Byte writes reach each half of the register.
        config.write(offset: 0x04, count: 1, value: 0x00)
        #expect(config.command == 0x0400)
        config.write(offset: 0x05, count: 1, value: 0x00)
        #expect(config.command == 0)
    }

    @Test("the interrupt line register is scratch space for the guest")
    func interruptLine() {
        var config = Self.identity()
        config.write(offset: 0x3C, count: 1, value: 0x0B)
        #expect(config.read(offset: 0x3C, count: 1) == 0x0B)
        config.write(offset: 0x3C, count: 4, value: 0xFFFF_FFFF)
        #expect(config.read(offset: 0x3C, count: 4) == 0x0000_00FF)  // interrupt pin and the rest stay 0
    }

    @Test(
        "sizing a 64-bit BAR: all ones reads back the size mask with the 64-bit type bits",
        arguments: [UInt64(0x10), 0x1000, 0x8000, 0x10_0000, 1 << 32, 8 << 30])
    func sizing64BitBAR(size: UInt64) {
        var config = Self.identity()
        let address: UInt64 = size >= 1 << 32 ? 0x40_0000_0000 : 0xFE00_0000
        config.addBAR(0, .init(size: size, is64Bit: true, address: address))
        #expect(config.read(offset: 0x10, count: 4) == UInt32(truncatingIfNeeded: address) | 0x4)
        #expect(config.read(offset: 0x14, count: 4) == UInt32(address >> 32))

        let mask = ~(size - 1)
        let probedLow = config.write(offset: 0x10, count: 4, value: 0xFFFF_FFFF)
        #expect(probedLow == (UInt32(truncatingIfNeeded: address) != UInt32(truncatingIfNeeded: mask) & 0xFFFF_FFF0))
        config.write(offset: 0x14, count: 4, value: 0xFFFF_FFFF)
        #expect(config.read(offset: 0x10, count: 4) == UInt32(truncatingIfNeeded: mask) & 0xFFFF_FFF0 | 0x4)
        #expect(config.read(offset: 0x14, count: 4) == UInt32(truncatingIfNeeded: mask >> 32))

        // The guest restores the address it found.
        let restoredLow = config.write(offset: 0x10, count: 4, value: UInt32(truncatingIfNeeded: address))
        let restoredHigh = config.write(offset: 0x14, count: 4, value: UInt32(address >> 32))
        #expect(restoredLow || size >= 1 << 32)  // above 4 GiB the low dword had nothing to change
        #expect(restoredHigh)
        #expect(config.bars[0]?.address == address)
        #expect(config.read(offset: 0x10, count: 4) == UInt32(truncatingIfNeeded: address) | 0x4)
        #expect(config.read(offset: 0x14, count: 4) == UInt32(address >> 32))
    }

    @Test("a BAR write reports whether the address changed, and keeps the size alignment")
    func barMoves() {
        var config = Self.identity()
        config.addBAR(0, .init(size: 0x8000, is64Bit: true, address: 0xFEB0_0000))
        var moves: [Bool] = []
        moves.append(config.write(offset: 0x10, count: 4, value: 0xC000_0000))
        #expect(config.bars[0]?.address == 0xC000_0000)
        moves.append(config.write(offset: 0x10, count: 4, value: 0xC000_0000))
        // Low bits inside the BAR are dropped: 0xC000_7FFF still decodes at 0xC000_0000.
        moves.append(config.write(offset: 0x10, count: 4, value: 0xC000_7FFF))
        #expect(config.read(offset: 0x10, count: 4) == 0xC000_0004)
        moves.append(config.write(offset: 0x14, count: 4, value: 0x1))
        #expect(config.bars[0]?.address == 0x1_C000_0000)
        #expect(config.read(offset: 0x14, count: 4) == 0x1)
        moves.append(config.write(offset: 0x14, count: 4, value: 0x1))
        #expect(moves == [true, false, false, true, false])
    }

    @Test("a 32-bit BAR has type bits 0 and does not claim the next register")
    func thirtyTwoBitBAR() {
        var config = Self.identity()
        config.addBAR(1, .init(size: 0x100, is64Bit: false, address: 0xFEBF_F000))
        #expect(config.read(offset: 0x14, count: 4) == 0xFEBF_F000)
        config.write(offset: 0x14, count: 4, value: 0xFFFF_FFFF)
        #expect(config.read(offset: 0x14, count: 4) == 0xFFFF_FF00)
        #expect(config.bars[1]?.address == 0xFFFF_FF00)
        let probedNext = config.write(offset: 0x18, count: 4, value: 0xFFFF_FFFF)
        #expect(!probedNext)
        #expect(config.read(offset: 0x18, count: 4) == 0)
        let restored = config.write(offset: 0x14, count: 4, value: 0xFEBF_F000)
        #expect(restored)
        #expect(config.bars[1]?.address == 0xFEBF_F000)
    }

    @Test("unimplemented BARs read as zero and ignore sizing writes", arguments: [0x18, 0x1C, 0x20, 0x24])
    func unimplementedBARs(offset: Int) {
        var config = Self.identity()
        config.addBAR(0, .init(size: 0x1000, is64Bit: true, address: 0xFE00_0000))
        #expect(config.read(offset: offset, count: 4) == 0)
        let changed = config.write(offset: offset, count: 4, value: 0xFFFF_FFFF)
        #expect(!changed)
        #expect(config.read(offset: offset, count: 4) == 0)
        #expect(config.bars.keys.sorted() == [0])
    }

    @Test("BARs accept only aligned dword writes")
    func barPartialWrites() {
        var config = Self.identity()
        config.addBAR(0, .init(size: 0x1000, is64Bit: true, address: 0xFE00_0000))
        let moves = [
            config.write(offset: 0x10, count: 2, value: 0xFFFF),
            config.write(offset: 0x12, count: 2, value: 0xFFFF),
            config.write(offset: 0x13, count: 1, value: 0xFF),
        ]
        #expect(moves == [false, false, false])
        #expect(config.read(offset: 0x10, count: 4) == 0xFE00_0004)
        #expect(config.bars[0]?.address == 0xFE00_0000)
    }

    @Test("capabilities form a dword-aligned chain from 0x34 and set status bit 4")
    func capabilityList() {
        var config = Self.identity()
        #expect(config.read(offset: 0x06, count: 2) & 0x10 == 0)
        #expect(config.read(offset: 0x34, count: 1) == 0)

        let first = config.addCapability(id: 0x11, body: [0xAA, 0xBB])
        let second = config.addCapability(id: 0x09, body: [1, 2, 3, 4, 5])
        let third = config.addCapability(id: 0x05, body: Array(repeating: 0xCC, count: 14))
        #expect(config.read(offset: 0x06, count: 2) & 0x10 != 0)
        #expect(first == 0x40)
        #expect(second == 0x44)
        #expect(third == 0x4C)  // 0x44 + 2 + 5 = 0x4B, rounded up to a dword

        var chain: [(offset: Int, id: UInt32)] = []
        var pointer = Int(config.read(offset: 0x34, count: 1))
        while pointer != 0 && chain.count < 48 {
            #expect(pointer % 4 == 0)
            chain.append((pointer, config.read(offset: pointer, count: 1)))
            pointer = Int(config.read(offset: pointer + 1, count: 1))
        }
        #expect(chain.map(\.offset) == [first, second, third])
        #expect(chain.map(\.id) == [0x11, 0x09, 0x05])
        #expect(config.read(offset: first + 2, count: 2) == 0xBBAA)
        #expect((0..<5).map { config.read(offset: second + 2 + $0, count: 1) } == [1, 2, 3, 4, 5])
        #expect(config.read(offset: third + 15, count: 1) == 0xCC)
    }

    @Test("capability bytes change only where the device marked them writable")
    func capabilityWriteMask() {
        var config = Self.identity()
        let cap = config.addCapability(id: 0x11, body: [0x01, 0x00, 0x00, 0x00], writable: [3: 0xC0])
        config.write(offset: cap, count: 4, value: 0xFFFF_FFFF)
        #expect(config.read(offset: cap, count: 4) == 0xC001_0011)
        config.write(offset: cap + 3, count: 1, value: 0x00)
        #expect(config.read(offset: cap, count: 4) == 0x0001_0011)
        // The device itself may change any byte.
        config.setByte(0x7F, at: cap + 4)
        #expect(config.read(offset: cap + 4, count: 1) == 0x7F)
    }

    @Test(
        "accesses outside the 256-byte header read all ones and are ignored",
        arguments: [(-1, 1), (-4, 4), (256, 1), (255, 2), (253, 4), (0x1000, 4)])
    func outOfRange(offset: Int, count: Int) {
        var config = Self.identity()
        #expect(config.read(offset: offset, count: count) == 0xFFFF_FFFF)
        let changed = config.write(offset: offset, count: count, value: 0)
        #expect(!changed)
        #expect(config.read(offset: 0, count: 4) == 0x1042_1AF4)
    }

    @Test("the last bytes of the header are still readable")
    func lastBytes() {
        let config = Self.identity()
        #expect(config.read(offset: 252, count: 4) == 0)
        #expect(config.read(offset: 255, count: 1) == 0)
    }
}
