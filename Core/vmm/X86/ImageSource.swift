/// Where kernel and initrd bytes come from: a file read straight into guest memory by the VMM,
/// or bytes in memory (tests). Reading in place avoids copying megabytes through Swift arrays.
public protocol ImageSource {
    /// Total size in bytes.
    var byteCount: Int { get }
    /// Fills `buffer` with the bytes at `offset` (the caller keeps the range inside the image).
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws
}

extension [UInt8]: ImageSource {
    public var byteCount: Int { count }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws {
        self[offset..<(offset + buffer.count)].withUnsafeBytes { buffer.copyMemory(from: $0) }
    }
}

extension ImageSource {
    /// The first `count` bytes (or all, if fewer).
    func prefix(_ count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: min(count, byteCount))
        try bytes.withUnsafeMutableBytes { try read(into: $0, at: 0) }
        return bytes
    }
}
