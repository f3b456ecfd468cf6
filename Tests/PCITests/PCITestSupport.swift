import Devices
import Synchronization

@testable import PCI

/// A PCI function backed by a plain ``PCIConfigSpace`` that records every BAR access.
final class FakePCIDevice: PCIDevice {
    struct Access: Equatable, Sendable {
        let bar: Int
        let offset: UInt64
        let count: Int
        let value: UInt64
    }

    let config: Mutex<PCIConfigSpace>
    private let accesses = Mutex<(reads: [Access], writes: [Access])>(([], []))

    init(_ config: PCIConfigSpace) { self.config = Mutex(config) }

    /// A device with a 64-bit BAR 0 and a 32-bit BAR 2.
    convenience init(bar0: UInt64, bar0Size: UInt64 = 0x1000, bar2: UInt64, bar2Size: UInt64 = 0x100) {
        var config = PCIConfigSpace(vendor: 0x1234, device: 0x5678, classCode: 0xFF_0000)
        config.addBAR(0, .init(size: bar0Size, is64Bit: true, address: bar0))
        config.addBAR(2, .init(size: bar2Size, is64Bit: false, address: bar2))
        self.init(config)
    }

    var reads: [Access] { accesses.withLock { $0.reads } }
    var writes: [Access] { accesses.withLock { $0.writes } }

    func readConfig(offset: Int, count: Int) -> UInt32 {
        config.withLock { $0.read(offset: offset, count: count) }
    }

    func writeConfig(offset: Int, count: Int, value: UInt32) {
        config.withLock { _ = $0.write(offset: offset, count: count, value: value) }
    }

    var barState: (bars: [Int: PCIConfigSpace.BAR], memoryEnabled: Bool) {
        config.withLock { ($0.bars, $0.memoryEnabled) }
    }

    /// Answers reads with `0xB0 + bar` in every byte.
    func readBAR(_ index: Int, offset: UInt64, data: UnsafeMutableRawBufferPointer) {
        for i in 0..<data.count { data[i] = UInt8(0xB0 + index) }
        accesses.withLock {
            $0.reads.append(Access(bar: index, offset: offset, count: data.count, value: 0))
        }
    }

    func writeBAR(_ index: Int, offset: UInt64, data: UnsafeRawBufferPointer) {
        let value = data.littleEndianValue
        accesses.withLock {
            $0.writes.append(Access(bar: index, offset: offset, count: data.count, value: value))
        }
    }
}

/// One MSI message as a signaler received it.
struct MSIMessage: Equatable, Sendable, CustomStringConvertible {
    let address: UInt64
    let data: UInt32

    var description: String { "MSI(0x\(String(address, radix: 16)), 0x\(String(data, radix: 16)))" }
}

/// Records every message it is asked to deliver.
final class RecordingSignaler: MSISignaler {
    private let storage = Mutex<[(vector: Int, message: MSIMessage)]>([])

    func signal(vector: Int, address: UInt64, data: UInt32) {
        storage.withLock { $0.append((vector, MSIMessage(address: address, data: data))) }
    }

    var messages: [MSIMessage] { storage.withLock { $0.map(\.message) } }
    /// The table entry each message came from.
    var vectors: [Int] { storage.withLock { $0.map(\.vector) } }
}

extension BusDevice {
    /// A guest read of `count` bytes (1, 2, 4 or 8) at `offset`, as a little-endian value.
    func read(_ offset: UInt64, count: Int) -> UInt64 {
        var bytes = [UInt8](repeating: 0xA5, count: count)
        bytes.withUnsafeMutableBytes { read(offset: offset, data: $0) }
        return bytes.enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
    }

    /// A guest write of the low `count` bytes of `value` at `offset`.
    func write(_ offset: UInt64, _ value: UInt64, count: Int) {
        let bytes = (0..<count).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
        bytes.withUnsafeBytes { write(offset: offset, data: $0) }
    }
}

extension IOBus {
    /// A guest read of `count` bytes at `address`; nil when no device claims it.
    func read(_ address: UInt64, count: Int) -> UInt64? {
        var bytes = [UInt8](repeating: 0, count: count)
        let claimed = bytes.withUnsafeMutableBytes { read(address, data: $0) }
        guard claimed else { return nil }
        return bytes.enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
    }

    /// A guest write of the low `count` bytes of `value`; false when no device claims it.
    @discardableResult
    func write(_ address: UInt64, _ value: UInt64, count: Int) -> Bool {
        let bytes = (0..<count).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
        return bytes.withUnsafeBytes { write(address, data: $0) }
    }
}

/// Configuration mechanism #1 as a guest kernel uses it: an `outl` to 0xCF8, then an access to
/// 0xCFC + (register & 3).
struct ConfigMechanism1 {
    let ports: any BusDevice

    init(_ bus: PCIBus) { ports = bus.configPortDevice }

    static func address(bus: UInt32 = 0, slot: Int, function: UInt32 = 0, register: Int, enable: Bool = true)
        -> UInt32
    {
        (enable ? 0x8000_0000 : 0) | bus << 16 | UInt32(slot) << 11 | function << 8 | UInt32(register & 0xFC)
    }

    func select(_ address: UInt32) { ports.write(0, UInt64(address), count: 4) }

    func read(slot: Int, register: Int, count: Int = 4) -> UInt32 {
        select(Self.address(slot: slot, register: register))
        return UInt32(ports.read(4 + UInt64(register & 3), count: count))
    }

    func write(slot: Int, register: Int, _ value: UInt32, count: Int = 4) {
        select(Self.address(slot: slot, register: register))
        ports.write(4 + UInt64(register & 3), UInt64(value), count: count)
    }

    /// Reads the data window with whatever address is selected.
    func readData(count: Int = 4) -> UInt32 { UInt32(ports.read(4, count: count)) }
}
