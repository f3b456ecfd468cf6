/// A PCI function's 256-byte configuration header: fixed identity fields, the command register,
/// up to six BARs with their sizing behaviour, and a capability list.
///
/// Only bits that real hardware lets software change are writable; BAR writes keep the size
/// alignment and type bits, so the guest's sizing probe (write all ones, read back) works.
public struct PCIConfigSpace: Sendable {
    /// One base address register.
    public struct BAR: Sendable, Equatable {
        /// Size in bytes (a power of two, at least 16 for memory, 4 for I/O).
        public var size: UInt64
        public var is64Bit: Bool
        /// Current base address as programmed (by the VMM at start, then by the guest).
        public var address: UInt64

        public init(size: UInt64, is64Bit: Bool = true, address: UInt64 = 0) {
            self.size = size
            self.is64Bit = is64Bit
            self.address = address
        }
    }

    public static let commandMemoryEnable: UInt16 = 0x2
    public static let commandBusMaster: UInt16 = 0x4
    static let statusCapabilities: UInt16 = 0x10

    private(set) var bytes = [UInt8](repeating: 0, count: 256)
    /// BARs by register index (0...5); a 64-bit BAR also occupies the next index.
    public private(set) var bars: [Int: BAR] = [:]
    private var writableMask = [UInt8](repeating: 0, count: 256)
    private var lastCapability = 0
    private var nextCapabilityOffset = 0x40

    public init(
        vendor: UInt16, device: UInt16, classCode: UInt32, revision: UInt8 = 0, subsystemVendor: UInt16 = 0,
        subsystem: UInt16 = 0
    ) {
        store(vendor, at: 0x00)
        store(device, at: 0x02)
        bytes[0x08] = revision
        bytes[0x09] = UInt8(truncatingIfNeeded: classCode)
        bytes[0x0A] = UInt8(truncatingIfNeeded: classCode >> 8)
        bytes[0x0B] = UInt8(truncatingIfNeeded: classCode >> 16)
        store(subsystemVendor, at: 0x2C)
        store(subsystem, at: 0x2E)
        // Command: I/O, memory, bus master, INTx disable are the guest's to set.
        setWritable(0x04, mask: UInt16(0x0407))
        // Interrupt line is scratch for the guest.
        writableMask[0x3C] = 0xFF
    }

    public var command: UInt16 { load(UInt16.self, at: 0x04) }

    /// Whether the guest has turned on memory decoding (BARs respond only then).
    public var memoryEnabled: Bool { command & Self.commandMemoryEnable != 0 }

    // MARK: - Setup

    /// Declares memory BAR `index` (0...5) of `bar.size` bytes, placed at `bar.address`.
    public mutating func addBAR(_ index: Int, _ bar: BAR) {
        precondition((0...5).contains(index) && bar.size.nonzeroBitCount == 1 && bar.size >= 16, "invalid BAR \(index)")
        bars[index] = bar
        writeBARRegisters(index)
    }

    /// Appends a capability with `id` and `body` (the bytes after the ID and next pointer);
    /// returns its offset. `writable` marks bytes of `body` (by offset within the capability) that
    /// the guest may change.
    @discardableResult
    public mutating func addCapability(id: UInt8, body: [UInt8], writable: [Int: UInt8] = [:]) -> Int {
        let offset = nextCapabilityOffset
        precondition(offset + 2 + body.count <= 256, "capabilities overflow config space")
        bytes[offset] = id
        bytes[offset + 1] = 0
        bytes.replaceSubrange((offset + 2)..<(offset + 2 + body.count), with: body)
        for (relative, mask) in writable { writableMask[offset + relative] = mask }
        if lastCapability == 0 {
            bytes[0x34] = UInt8(offset)
            store(load(UInt16.self, at: 0x06) | Self.statusCapabilities, at: 0x06)
        } else {
            bytes[lastCapability + 1] = UInt8(offset)
        }
        lastCapability = offset
        nextCapabilityOffset = (offset + 2 + body.count + 3) & ~3
        return offset
    }

    // MARK: - Guest access

    /// Reads `count` (1, 2 or 4) bytes at `offset`; out-of-range reads return all ones.
    public func read(offset: Int, count: Int) -> UInt32 {
        guard offset >= 0, offset + count <= 256 else { return UInt32.max }
        var value: UInt32 = 0
        for i in 0..<count { value |= UInt32(bytes[offset + i]) << (8 * i) }
        return value
    }

    /// Applies a guest write; returns whether a BAR's address changed.
    @discardableResult
    public mutating func write(offset: Int, count: Int, value: UInt32) -> Bool {
        guard offset >= 0, offset + count <= 256 else { return false }
        if (0x10..<0x28).contains(offset) { return writeBAR(offset: offset, count: count, value: value) }
        for i in 0..<count {
            let mask = writableMask[offset + i]
            let byte = UInt8(truncatingIfNeeded: value >> (8 * i))
            bytes[offset + i] = (bytes[offset + i] & ~mask) | (byte & mask)
        }
        return false
    }

    /// Changes bytes the device itself owns (capability state), bypassing the guest's write mask.
    public mutating func setByte(_ value: UInt8, at offset: Int) { bytes[offset] = value }

    // MARK: - BARs

    private mutating func writeBAR(offset: Int, count: Int, value: UInt32) -> Bool {
        guard count == 4, offset % 4 == 0 else { return false }  // BARs take dword writes only
        let register = (offset - 0x10) / 4
        if let bar = bars[register] {
            var updated = bar
            let low = UInt64(value) & ~(bar.size - 1) & 0xFFFF_FFF0
            updated.address = (bar.address & 0xFFFF_FFFF_0000_0000) | low
            bars[register] = updated
            writeBARRegisters(register)
            return updated.address != bar.address
        }
        if let bar = bars[register - 1], bar.is64Bit {
            var updated = bar
            let highMask = ~((bar.size - 1) >> 32)
            updated.address = (bar.address & 0xFFFF_FFFF) | ((UInt64(value) & highMask) << 32)
            bars[register - 1] = updated
            writeBARRegisters(register - 1)
            return updated.address != bar.address
        }
        return false  // unimplemented BARs read as zero
    }

    private mutating func writeBARRegisters(_ index: Int) {
        guard let bar = bars[index] else { return }
        let type: UInt32 = bar.is64Bit ? 0x4 : 0x0
        store(UInt32(truncatingIfNeeded: bar.address) & 0xFFFF_FFF0 | type, at: 0x10 + index * 4)
        if bar.is64Bit { store(UInt32(truncatingIfNeeded: bar.address >> 32), at: 0x10 + (index + 1) * 4) }
    }

    // MARK: - Helpers

    private mutating func setWritable(_ offset: Int, mask: UInt16) {
        writableMask[offset] = UInt8(mask & 0xFF)
        writableMask[offset + 1] = UInt8(mask >> 8)
    }

    mutating func store<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        for i in 0..<MemoryLayout<T>.size { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * i)) }
    }

    func load<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
        var value: T = 0
        for i in 0..<MemoryLayout<T>.size { value |= T(bytes[offset + i]) << (8 * i) }
        return value
    }
}
