/// Little-endian fields in byte arrays: boot-protocol structures, device requests and tables.
///
/// Inlinable, so that callers in other modules get code specialized for their integer type:
/// unspecialized, every field of a virtio header went through protocol witnesses.
extension [UInt8] {
    /// Stores `value` little-endian at `offset` (which the caller keeps in range).
    @inlinable
    public mutating func storeLE<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        precondition(offset >= 0 && offset + MemoryLayout<T>.size <= count, "storeLE past the end")
        withUnsafeMutableBytes { $0.storeBytes(of: value.littleEndian, toByteOffset: offset, as: T.self) }
    }

    /// Reads a little-endian integer at `offset`, or nil when it would run past the end.
    @inlinable
    public func loadLE<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T? {
        guard offset >= 0, offset + MemoryLayout<T>.size <= count else { return nil }
        return withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: T.self)) }
    }
}
