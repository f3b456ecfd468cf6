/// The x86 guest-physical layout: RAM from 0, a hole below 4 GiB for MMIO (PCI BARs, the
/// IOAPIC and local APIC), and the rest of RAM from 4 GiB up.
extension GuestMemory {
    /// Start of the 32-bit MMIO hole (3 GiB), as Firecracker and crosvm place it.
    public static let mmioHoleStart: UInt64 = 0xC000_0000
    /// End of the 32-bit MMIO hole (4 GiB).
    public static let mmioHoleEnd: UInt64 = 0x1_0000_0000

    /// RAM ranges for `size` bytes of guest memory, split around the MMIO hole.
    public static func x86Ranges(size: UInt64) -> [(guestAddress: UInt64, size: UInt64)] {
        if size <= mmioHoleStart { return [(0, size)] }
        return [(0, mmioHoleStart), (mmioHoleEnd, size - mmioHoleStart)]
    }

    /// Maps `mebibytes` MiB of guest RAM with the x86 layout.
    public convenience init(x86MiB mebibytes: UInt64) throws(GuestMemoryError) {
        guard mebibytes > 0, mebibytes <= 1 << 20 else {
            throw .invalidLayout("memory size \(mebibytes) MiB is outside 1 MiB ... 1 TiB")
        }
        try self.init(ranges: GuestMemory.x86Ranges(size: mebibytes << 20))
    }
}
