import Synchronization
import Testing

@testable import Devices

@Suite("i8042 keyboard controller")
struct I8042Tests {
    static let data: UInt64 = 0
    static let command: UInt64 = 4  // status on read

    let resets = Collected<Void>()
    let controller: I8042

    init() {
        let resets = resets
        controller = I8042(onReset: { resets.append(()) })
    }

    @Test("writing 0xFE to the command port pulses reset exactly once")
    func reset() {
        controller.writeByte(Self.command, 0xFE)
        #expect(resets.values.count == 1)
    }

    @Test("0xFE written to the data port, or as a wide write, does not reset")
    func noResetOtherwise() {
        controller.writeByte(Self.data, 0xFE)
        controller.writeWide(Self.command, 0xFE, size: 2)
        controller.writeByte(Self.command, 0xFD)
        #expect(resets.values.isEmpty)
    }

    @Test("at reset the status has the system flag and no output pending")
    func initialStatus() {
        #expect(controller.readByte(Self.command) == 0x04)
        #expect(controller.readByte(Self.data) == 0)
    }

    @Test("command 0x20 queues the config byte: status bit 0 is set until the data port is read")
    func readConfig() {
        controller.writeByte(Self.command, 0x20)
        #expect(controller.readByte(Self.command) & 0x01 == 0x01)
        #expect(controller.readByte(Self.command) & 0x08 == 0x08)  // last write was a command
        #expect(controller.readByte(Self.data) == 0x30)  // both ports disabled, no interrupts
        #expect(controller.readByte(Self.command) & 0x01 == 0)
        #expect(controller.readByte(Self.data) == 0)
    }

    @Test("command 0x60 then a data write replaces the config byte")
    func writeConfig() {
        controller.writeByte(Self.command, 0x60)
        controller.writeByte(Self.data, 0x47)
        #expect(controller.readByte(Self.command) & 0x08 == 0)  // last write was data
        controller.writeByte(Self.command, 0x20)
        #expect(controller.readByte(Self.data) == 0x47)
    }

    @Test("a data write without a preceding 0x60 leaves the config alone")
    func strayDataWrite() {
        controller.writeByte(Self.command, 0x60)
        controller.writeByte(Self.data, 0x11)
        controller.writeByte(Self.data, 0x22)  // no command pending any more
        controller.writeByte(Self.command, 0x20)
        #expect(controller.readByte(Self.data) == 0x11)
    }

    @Test("controller self-test (0xAA) answers 0x55 and interface test (0xAB) answers 0x00")
    func selfTests() {
        controller.writeByte(Self.command, 0xAA)
        #expect(controller.readByte(Self.command) & 0x01 == 0x01)
        #expect(controller.readByte(Self.data) == 0x55)
        controller.writeByte(Self.command, 0xAB)
        #expect(controller.readByte(Self.command) & 0x01 == 0x01)
        #expect(controller.readByte(Self.data) == 0x00)
        #expect(controller.readByte(Self.command) & 0x01 == 0)
    }

    @Test("offsets between the data and command ports read 0xFF", arguments: [UInt64(1), 2, 3])
    func otherOffsets(offset: UInt64) {
        #expect(controller.readByte(offset) == 0xFF)
    }
}

@Suite("CMOS real-time clock")
struct CMOSTests {
    /// 2026-11-23 11:07:59 UTC, a Monday.
    static let fixedTime = 1_795_432_079

    let cmos = CMOS(now: { CMOSTests.fixedTime })

    func register(_ index: UInt8) -> UInt8 {
        cmos.writeByte(0, index)
        return cmos.readByte(1)
    }

    @Test(
        "clock registers read the fixed time in BCD",
        arguments: [
            (0x00, 0x59),  // seconds
            (0x02, 0x07),  // minutes
            (0x04, 0x11),  // hours, 24-hour mode
            (0x06, 0x02),  // day of week, Sunday = 1
            (0x07, 0x23),  // day of month
            (0x08, 0x11),  // month
            (0x09, 0x26),  // year in the century
        ] as [(UInt8, UInt8)])
    func clock(index: UInt8, bcd: UInt8) {
        #expect(register(index) == bcd)
    }

    @Test("alarm registers read 0", arguments: [UInt8(0x01), 0x03, 0x05, 0x0C])
    func alarms(index: UInt8) {
        #expect(register(index) == 0)
    }

    @Test("status B says 24-hour BCD, status D battery good, status A no update in progress")
    func statusRegisters() {
        #expect(register(0x0B) == 0x02)
        #expect(register(0x0D) == 0x80)
        #expect(register(0x0A) & 0x80 == 0)
    }

    @Test("another time of day reads back in BCD too")
    func otherTime() {
        // 1999-12-31 23:59:58 UTC, a Friday.
        let cmos = CMOS(now: { 946_684_798 })
        let read = { (index: UInt8) -> UInt8 in
            cmos.writeByte(0, index)
            return cmos.readByte(1)
        }
        #expect(
            [read(0), read(2), read(4), read(6), read(7), read(8), read(9)] == [
                0x58, 0x59, 0x23, 0x06, 0x31, 0x12, 0x99,
            ])
    }

    @Test("bit 7 of the index (the NMI mask) is ignored")
    func nmiMask() {
        #expect(register(0x84) == 0x11)
        #expect(register(0x80) == 0x59)
        #expect(cmos.readByte(0) == 0x00)  // the index port reads back the index without bit 7
        cmos.writeByte(0, 0x8E)
        cmos.writeByte(1, 0x3C)
        #expect(register(0x0E) == 0x3C)
    }

    @Test("bytes at index 0x0E and above store what is written", arguments: [UInt8(0x0E), 0x10, 0x3F, 0x7F])
    func storage(index: UInt8) {
        #expect(register(index) == 0)
        cmos.writeByte(0, index)
        cmos.writeByte(1, 0xA0 | index & 0x0F)
        #expect(register(index) == 0xA0 | index & 0x0F)
    }

    @Test("clock registers ignore writes")
    func clockReadOnly() {
        cmos.writeByte(0, 0x00)
        cmos.writeByte(1, 0x00)
        #expect(register(0x00) == 0x59)
        cmos.writeByte(0, 0x0B)
        cmos.writeByte(1, 0x06)
        #expect(register(0x0B) == 0x02)
    }

    @Test(
        "setMemorySize records RAM above 16 MiB in 64 KiB units at 0x34/0x35",
        arguments: [
            (256 << 20, 0x0F00), (32 << 20, 0x0100), (16 << 20, 0), (8 << 20, 0),
            ((16 << 20) + (64 << 10) * 0x1234, 0x1234), (8 << 30, 0xFFFF),
        ] as [(UInt64, UInt16)])
    func memorySize(bytes: UInt64, above16M: UInt16) {
        cmos.setMemorySize(bytes: bytes)
        #expect(register(0x34) == UInt8(above16M & 0xFF))
        #expect(register(0x35) == UInt8(above16M >> 8))
    }

    @Test("setMemorySize records RAM above 1 MiB in KiB at 0x17/0x18 and 0x30/0x31, capped at 0xFFFF")
    func extendedMemory() {
        cmos.setMemorySize(bytes: 32 << 20)
        #expect([register(0x17), register(0x18), register(0x30), register(0x31)] == [0x00, 0x7C, 0x00, 0x7C])
        cmos.setMemorySize(bytes: 256 << 20)
        #expect([register(0x17), register(0x18), register(0x30), register(0x31)] == [0xFF, 0xFF, 0xFF, 0xFF])
    }

    @Test("wide accesses: a data read gives 0xFF in its low byte and a write is ignored")
    func wideAccess() {
        cmos.writeByte(0, 0x20)
        #expect(cmos.readWide(1, size: 2) & 0xFF == 0xFF)
        cmos.writeWide(1, 0x1234, size: 2)
        #expect(cmos.readByte(1) == 0)
        cmos.writeWide(0, 0x00, size: 2)
        #expect(cmos.readByte(0) == 0x20)
    }
}

@Suite("Debug port 0x80")
struct DebugPortTests {
    @Test("a one-byte write reports the value", arguments: [UInt8(0x00), 0x41, 0xFF])
    func marker(value: UInt8) {
        let markers = Collected<UInt8>()
        let port = DebugPort(onMarker: { markers.append($0) })
        port.writeByte(0, value)
        #expect(markers.values == [value])
    }

    @Test("successive markers are reported in order")
    func markersInOrder() {
        let markers = Collected<UInt8>()
        let port = DebugPort(onMarker: { markers.append($0) })
        for value: UInt8 in [1, 2, 3, 0x10] { port.writeByte(0, value) }
        #expect(markers.values == [1, 2, 3, 0x10])
    }

    @Test("wider writes are not markers, and reads return 0", arguments: [2, 4])
    func wideWrites(size: Int) {
        let markers = Collected<UInt8>()
        let port = DebugPort(onMarker: { markers.append($0) })
        port.writeWide(0, 0x4142_4344, size: size)
        #expect(markers.values.isEmpty)
        #expect(port.readByte(0) == 0)
        #expect(port.readWide(0, size: size) == 0)
    }

    @Test("the port is 0x80")
    func portNumber() {
        #expect(DebugPort.port == 0x80)
    }
}

@Suite("ACPI sleep control")
struct SleepControlTests {
    @Test(
        "SLP_EN with the S5 sleep type powers off; other values do not",
        arguments: [
            (UInt8(0x34), true),  // (5 << 2) | SLP_EN
            (UInt8(0x14), false),  // S5 without SLP_EN
            (UInt8(0x24), false),  // S1 with SLP_EN
            (UInt8(0x00), false),
        ])
    func powerOff(value: UInt8, powersOff: Bool) {
        let count = Mutex(0)
        let device = SleepControl(s5SleepType: 5, onPowerOff: { count.withLock { $0 += 1 } })
        var byte = value
        withUnsafeBytes(of: &byte) { device.write(offset: 0, data: $0) }
        #expect(count.withLock { $0 } == (powersOff ? 1 : 0))
        // The status register and wide writes never power off.
        withUnsafeBytes(of: &byte) { device.write(offset: 1, data: $0) }
        var wide = UInt16(value)
        withUnsafeBytes(of: &wide) { device.write(offset: 0, data: $0) }
        #expect(count.withLock { $0 } == (powersOff ? 1 : 0))
    }
}
