/// Little-endian fields in byte arrays: boot-protocol structures, device requests and tables.
extension [UInt8] {
    /// Stores `value` little-endian at `offset` (which the caller keeps in range).
    public mutating func storeLE<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        for i in 0..<MemoryLayout<T>.size { self[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * i)) }
    }

    /// Reads a little-endian integer at `offset`, or nil when it would run past the end.
    public func loadLE<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T? {
        guard offset >= 0, offset + MemoryLayout<T>.size <= count else { return nil }
        var value: T = 0
        for i in 0..<MemoryLayout<T>.size { value |= T(self[offset + i]) << (8 * i) }
        return value
    }
}
