/// Offsets into the Linux zero page (`struct boot_params`) and its setup header, from the
/// kernel's Documentation/arch/x86/boot.rst and zero-page.rst.
public enum BootParams {
    /// Size of the zero page.
    public static let size = 4096

    // MARK: - Zero page fields
    public static let extRamdiskImage = 0x0C0
    public static let extRamdiskSize = 0x0C4
    public static let extCmdLinePtr = 0x0C8
    public static let e820Entries = 0x1E8
    public static let e820Table = 0x2D0
    public static let e820MaxEntries = 128

    // MARK: - Setup header fields (same offsets in the bzImage file and the zero page)
    public static let setupHeaderStart = 0x1F1
    public static let setupSects = 0x1F1
    public static let bootFlag = 0x1FE
    public static let jump = 0x200
    public static let header = 0x202
    public static let version = 0x206
    public static let typeOfLoader = 0x210
    public static let loadFlags = 0x211
    public static let ramdiskImage = 0x218
    public static let ramdiskSize = 0x21C
    public static let heapEndPtr = 0x224
    public static let cmdLinePtr = 0x228
    public static let initrdAddrMax = 0x22C
    public static let kernelAlignment = 0x230
    public static let relocatableKernel = 0x234
    public static let xLoadFlags = 0x236
    public static let cmdlineSize = 0x238
    public static let prefAddress = 0x258
    public static let initSize = 0x260

    /// "HdrS", little-endian.
    public static let headerMagic: UInt32 = 0x5372_6448
    /// `loadflags`: the protected-mode kernel is loaded high (at 1 MiB or above).
    public static let loadedHigh: UInt8 = 0x01
    /// `loadflags`: `heap_end_ptr` is valid.
    public static let canUseHeap: UInt8 = 0x80
    /// `xloadflags`: the kernel has the 64-bit entry point at load address + 0x200.
    public static let xlfKernel64: UInt16 = 0x01
    /// `type_of_loader` for a boot loader without an assigned ID.
    public static let undefinedLoader: UInt8 = 0xFF
}

/// One entry of the BIOS e820 memory map.
public struct E820Entry: Sendable, Equatable {
    public enum Kind: UInt32, Sendable {
        case ram = 1
        case reserved = 2
    }

    public var address: UInt64
    public var size: UInt64
    public var kind: Kind

    public init(address: UInt64, size: UInt64, kind: Kind) {
        self.address = address
        self.size = size
        self.kind = kind
    }
}
