#if canImport(Glibc)
    import Glibc
#endif

/// The guest's physical RAM: host mappings registered with KVM, and bounds-checked accessors.
///
/// Every address and length that comes from the guest (a descriptor, a boot-protocol field) is
/// checked against the regions before the VMM touches host memory: a range that is not wholly
/// inside one region throws ``GuestMemoryError/outOfRange(address:count:)`` instead of reading
/// or writing outside guest RAM.
///
/// The memory is shared with running vCPUs, so accessors copy bytes in and out and never hand
/// out Swift values that alias guest memory beyond a closure's scope.
public final class GuestMemory: @unchecked Sendable {
    /// One contiguous range of guest-physical RAM backed by one host mapping.
    public struct Region: Sendable {
        /// Guest-physical address of the first byte.
        public let guestAddress: UInt64
        /// Size in bytes.
        public let size: UInt64
        /// Host address of the first byte (stays valid for the lifetime of the ``GuestMemory``).
        public let hostAddress: UInt

        /// Guest-physical address one past the last byte.
        public var guestEnd: UInt64 { guestAddress + size }
    }

    /// Regions in ascending guest-address order, never overlapping.
    public let regions: [Region]
    /// The lowest region again (an empty one when there is none), checked inline before any
    /// array access: nearly every access a device makes falls in it, and it is made several
    /// times per packet.
    @usableFromInline let lowRegion: Region

    /// Total RAM in bytes.
    public var size: UInt64 { regions.reduce(0) { $0 + $1.size } }

    /// Maps anonymous shared memory for each `(guestAddress, size)` range.
    ///
    /// Ranges must be page-aligned, non-empty, and must not overlap.
    public init(ranges: [(guestAddress: UInt64, size: UInt64)]) throws(GuestMemoryError) {
        let sorted = ranges.sorted { $0.guestAddress < $1.guestAddress }
        var previousEnd: UInt64 = 0
        for range in sorted {
            guard range.size > 0, range.guestAddress % Self.pageSize == 0, range.size % Self.pageSize == 0
            else {
                throw .invalidLayout(
                    "range at \(hex(range.guestAddress)) of \(range.size) bytes is not page-aligned and non-empty")
            }
            guard range.guestAddress >= previousEnd else {
                throw .invalidLayout("range at \(hex(range.guestAddress)) overlaps the one before it")
            }
            let (end, overflow) = range.guestAddress.addingReportingOverflow(range.size)
            guard !overflow else { throw .invalidLayout("range at \(hex(range.guestAddress)) wraps around") }
            previousEnd = end
        }
        var mapped: [Region] = []
        for range in sorted {
            guard let length = Int(exactly: range.size) else {
                Self.unmap(mapped)
                throw .invalidLayout("range of \(range.size) bytes is too large")
            }
            // Private anonymous memory, as Firecracker maps guest RAM: unlike shared memory it can be
            // backed by transparent huge pages, which cuts the nested-paging faults of a booting
            // guest several-fold. (Device processes that need to share guest RAM would use a memfd.)
            guard let pointer = Self.mapAligned(length) else {
                let code = errno
                Self.unmap(mapped)
                throw .mapFailed(size: range.size, errno: code)
            }
            madvise(pointer, length, MADV_HUGEPAGE)  // a hint: without THP the mapping still works
            mapped.append(
                Region(guestAddress: range.guestAddress, size: range.size, hostAddress: UInt(bitPattern: pointer)))
        }
        regions = mapped
        lowRegion = mapped.first ?? Region(guestAddress: 0, size: 0, hostAddress: 0)
    }

    deinit { Self.unmap(regions) }

    /// The page size the layout is checked against.
    public static let pageSize: UInt64 = 4096
    /// Host mappings start on this boundary, as guest-physical regions do: only then can a
    /// 2 MiB guest page sit on one host huge page, and KVM map it with one nested-paging entry
    /// instead of 512 (QEMU aligns guest RAM the same way).
    public static let hugePageSize = 2 << 20

    /// An anonymous mapping of `length` bytes starting on a ``hugePageSize`` boundary: a larger
    /// mapping, trimmed at both ends.
    private static func mapAligned(_ length: Int) -> UnsafeMutableRawPointer? {
        let (reserved, overflow) = length.addingReportingOverflow(hugePageSize)
        guard !overflow else {
            errno = ENOMEM
            return nil
        }
        let raw = mmap(nil, reserved, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let raw, raw != MAP_FAILED else { return nil }
        let base = UInt(bitPattern: raw)
        let start = (base + UInt(hugePageSize) - 1) & ~UInt(hugePageSize - 1)
        let head = Int(start - base)
        if head > 0 { munmap(raw, head) }
        let tail = reserved - head - length
        if tail > 0 { munmap(UnsafeMutableRawPointer(bitPattern: start + UInt(length)), tail) }
        return UnsafeMutableRawPointer(bitPattern: start)
    }

    private static func unmap(_ regions: [Region]) {
        for region in regions {
            munmap(UnsafeMutableRawPointer(bitPattern: region.hostAddress), Int(region.size))
        }
    }

    // MARK: - Translation

    /// The host bytes for `count` bytes at guest-physical `address`, which must lie inside one region.
    ///
    /// The buffer is valid while `self` lives; callers keep it only for the duration of one access.
    /// Always inlined: devices translate several addresses per packet, and the common case (the
    /// lowest region) is two comparisons.
    @inlinable @inline(__always)
    public func buffer(at address: UInt64, count: Int) throws(GuestMemoryError) -> UnsafeMutableRawBufferPointer {
        // An address below the region wraps to a large offset, which fails the same test.
        let offset = address &- lowRegion.guestAddress
        if offset < lowRegion.size, count >= 0, UInt64(count) <= lowRegion.size - offset {
            let base = UnsafeMutableRawPointer(bitPattern: lowRegion.hostAddress + UInt(offset))
            return UnsafeMutableRawBufferPointer(start: base, count: count)
        }
        return try bufferAbove(address, count: count)
    }

    /// ``buffer(at:count:)`` for ranges that do not start in the lowest region.
    @usableFromInline
    func bufferAbove(_ address: UInt64, count: Int) throws(GuestMemoryError) -> UnsafeMutableRawBufferPointer {
        guard count >= 0, let region = region(containing: address) else {
            throw .outOfRange(address: address, count: count)
        }
        let offset = address - region.guestAddress
        guard UInt64(count) <= region.size - offset else {
            throw .outOfRange(address: address, count: count)
        }
        let base = UnsafeMutableRawPointer(bitPattern: region.hostAddress + UInt(offset))
        return UnsafeMutableRawBufferPointer(start: base, count: count)
    }

    /// The region that contains `address`, if any.
    @inlinable
    public func region(containing address: UInt64) -> Region? {
        // Few regions (at most two for RAM split around the MMIO hole): a linear scan is fastest.
        regions.first { address >= $0.guestAddress && address - $0.guestAddress < $0.size }
    }

    /// Whether `count` bytes at `address` lie inside one region.
    @inlinable
    public func contains(address: UInt64, count: Int) -> Bool {
        (try? buffer(at: address, count: count)) != nil
    }

    // MARK: - Access

    /// Copies `bytes` into guest memory at `address`.
    @inlinable
    public func write(_ bytes: some Collection<UInt8>, at address: UInt64) throws(GuestMemoryError) {
        let target = try buffer(at: address, count: bytes.count)
        target.copyBytes(from: bytes)
    }

    /// Copies `count` bytes out of guest memory at `address`.
    @inlinable
    public func read(at address: UInt64, count: Int) throws(GuestMemoryError) -> [UInt8] {
        let source = try buffer(at: address, count: count)
        return Array(source)
    }

    /// Reads a little-endian integer at `address` (no alignment required).
    @inlinable
    public func load<T: FixedWidthInteger>(_: T.Type = T.self, at address: UInt64) throws(GuestMemoryError) -> T {
        let source = try buffer(at: address, count: MemoryLayout<T>.size)
        return T(littleEndian: source.loadUnaligned(as: T.self))
    }

    /// Writes a little-endian integer at `address` (no alignment required).
    @inlinable
    public func store<T: FixedWidthInteger>(_ value: T, at address: UInt64) throws(GuestMemoryError) {
        let target = try buffer(at: address, count: MemoryLayout<T>.size)
        target.storeBytes(of: value.littleEndian, as: T.self)
    }

    /// Fills `count` bytes at `address` with zeros.
    public func zero(at address: UInt64, count: Int) throws(GuestMemoryError) {
        let target = try buffer(at: address, count: count)
        if let base = target.baseAddress { memset(base, 0, count) }
    }
}

/// Why a guest-memory operation failed.
public enum GuestMemoryError: Error, Equatable, CustomStringConvertible {
    /// The range is not wholly inside guest RAM.
    case outOfRange(address: UInt64, count: Int)
    /// The requested layout is unusable.
    case invalidLayout(String)
    /// The host could not map the memory.
    case mapFailed(size: UInt64, errno: Int32)

    public var description: String {
        switch self {
        case .outOfRange(let address, let count):
            return "guest memory range \(hex(address)) + \(count) bytes is outside guest RAM"
        case .invalidLayout(let why):
            return "invalid guest memory layout: \(why)"
        case .mapFailed(let size, let code):
            return "cannot map \(size) bytes of guest memory: \(String(cString: strerror(code)))"
        }
    }
}

/// `0x`-prefixed hexadecimal, for messages about guest addresses.
func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }
