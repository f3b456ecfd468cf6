import Synchronization
import Testing

@testable import Devices

/// A register file that records writes and answers reads with `offset + 1`.
final class RecordingDevice: BusDevice {
    let writes = Mutex<[(UInt64, UInt64)]>([])

    func read(offset: UInt64, data: UnsafeMutableRawBufferPointer) {
        data.storeLittleEndian(offset + 1)
    }

    func write(offset: UInt64, data: UnsafeRawBufferPointer) {
        writes.withLock { $0.append((offset, data.littleEndianValue)) }
    }
}

@Suite("I/O bus")
struct IOBusTests {
    @Test("accesses reach the device that owns the address, with offsets relative to its base")
    func dispatch() throws {
        let bus = IOBus(name: "pio")
        let serial = RecordingDevice()
        let rtc = RecordingDevice()
        try bus.insert(serial, base: 0x3F8, length: 8)
        try bus.insert(rtc, base: 0x70, length: 2)

        var word: UInt16 = 0x1234
        #expect(withUnsafeBytes(of: &word) { bus.write(0x3FB, data: $0) })
        #expect(serial.writes.withLock { $0.map(\.0) } == [3])
        #expect(serial.writes.withLock { $0.map(\.1) } == [0x1234])

        var value: UInt32 = 0
        #expect(withUnsafeMutableBytes(of: &value) { bus.read(0x71, data: $0) })
        #expect(value == 2)
        #expect(rtc.writes.withLock { $0.isEmpty })
    }

    @Test("addresses with no device read as all ones and writes are dropped")
    func unclaimed() throws {
        let bus = IOBus(name: "mmio")
        try bus.insert(RecordingDevice(), base: 0x1000, length: 0x100)
        var value: UInt32 = 0
        #expect(!withUnsafeMutableBytes(of: &value) { bus.read(0x1100, data: $0) })
        #expect(value == 0xFFFF_FFFF)
        #expect(!withUnsafeBytes(of: &value) { bus.write(0xFFF, data: $0) })
    }

    @Test("overlapping, empty and wrapping ranges are refused")
    func invalidRanges() throws {
        let bus = IOBus(name: "mmio")
        try bus.insert(RecordingDevice(), base: 0x1000, length: 0x100)
        #expect(throws: IOBusError.overlap(bus: "mmio", base: 0x10FF, length: 1)) {
            try bus.insert(RecordingDevice(), base: 0x10FF, length: 1)
        }
        #expect(throws: IOBusError.overlap(bus: "mmio", base: 0xF00, length: 0x101)) {
            try bus.insert(RecordingDevice(), base: 0xF00, length: 0x101)
        }
        #expect(throws: IOBusError.self) { try bus.insert(RecordingDevice(), base: 0x2000, length: 0) }
        #expect(throws: IOBusError.self) { try bus.insert(RecordingDevice(), base: UInt64.max, length: 2) }
        // Adjacent ranges are fine.
        try bus.insert(RecordingDevice(), base: 0xF00, length: 0x100)
        try bus.insert(RecordingDevice(), base: 0x1100, length: 0x100)
    }

    @Test("a removed range stops receiving accesses (PCI BAR moves)")
    func remove() throws {
        let bus = IOBus(name: "mmio")
        let device = RecordingDevice()
        try bus.insert(device, base: 0xE000_0000, length: 0x1000)
        #expect(bus.lookup(0xE000_0FFF) != nil)
        #expect(bus.remove(base: 0xE000_0000))
        #expect(!bus.remove(base: 0xE000_0000))
        #expect(bus.lookup(0xE000_0000) == nil)
        try bus.insert(device, base: 0xE100_0000, length: 0x1000)
        #expect(bus.lookup(0xE100_0010)?.base == 0xE100_0000)
    }
}
