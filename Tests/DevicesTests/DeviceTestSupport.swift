import Synchronization

@testable import Devices

/// An interrupt line that counts its edges.
final class CountingInterrupt: InterruptLine {
    private let count = Mutex(0)

    func trigger() { count.withLock { $0 += 1 } }

    var triggers: Int { count.withLock { $0 } }
}

/// Collects the values a device hands to a callback.
final class Collected<Value: Sendable>: Sendable {
    private let storage = Mutex<[Value]>([])

    func append(_ value: Value) { storage.withLock { $0.append(value) } }

    var values: [Value] { storage.withLock { $0 } }
}

extension BusDevice {
    /// A one-byte guest read (`inb`) at `offset`.
    func readByte(_ offset: UInt64) -> UInt8 {
        var value: UInt8 = 0xA5
        withUnsafeMutableBytes(of: &value) { read(offset: offset, data: $0) }
        return value
    }

    /// A one-byte guest write (`outb`) at `offset`.
    func writeByte(_ offset: UInt64, _ value: UInt8) {
        var value = value
        withUnsafeBytes(of: &value) { write(offset: offset, data: $0) }
    }

    /// A guest read of `size` bytes (2, 4 or 8), as a little-endian value.
    func readWide(_ offset: UInt64, size: Int) -> UInt64 {
        var bytes = [UInt8](repeating: 0xA5, count: size)
        bytes.withUnsafeMutableBytes { read(offset: offset, data: $0) }
        return bytes.enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
    }

    /// A guest write of the low `size` bytes of `value`.
    func writeWide(_ offset: UInt64, _ value: UInt64, size: Int) {
        let bytes = (0..<size).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
        bytes.withUnsafeBytes { write(offset: offset, data: $0) }
    }
}
