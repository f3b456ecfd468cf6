/// A device reachable through guest port I/O or MMIO.
///
/// Offsets are relative to the start of the range the device was registered at; `data.count` is
/// the access size (1, 2, 4 or 8 bytes). Devices are called from vCPU threads concurrently, so
/// implementations protect their own state.
public protocol BusDevice: Sendable {
    /// Fills `data` with the bytes the guest reads at `offset`.
    func read(offset: UInt64, data: UnsafeMutableRawBufferPointer)
    /// Handles the guest writing `data` at `offset`.
    func write(offset: UInt64, data: UnsafeRawBufferPointer)
}

extension UnsafeMutableRawBufferPointer {
    /// Stores the low `count` bytes of `value`, little-endian; for device register reads.
    public func storeLittleEndian(_ value: UInt64) {
        for i in 0..<count { self[i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
    }
}

extension UnsafeRawBufferPointer {
    /// The bytes as a little-endian integer (up to 8 bytes); for device register writes.
    public var littleEndianValue: UInt64 {
        var value: UInt64 = 0
        for i in 0..<Swift.min(count, 8) { value |= UInt64(self[i]) << (8 * UInt64(i)) }
        return value
    }
}
