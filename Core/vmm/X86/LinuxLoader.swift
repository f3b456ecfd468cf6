import GuestMemory

/// Loads a Linux kernel for the x86 64-bit boot protocol: a bzImage (boot protocol 2.12 or later
/// with `XLF_KERNEL_64`) or an ELF vmlinux with a PVH note is recognised; anything else is
/// refused with an error that says what the file is not.
///
/// Guest-physical layout used (below 1 MiB unless noted):
/// - 0x500..0x1000: GDT and IDT (``LongModeLayout``); 0x7000: the zero page;
/// - 0x9000..0xF000: boot page tables; 0x20000: the command line;
/// - 0x9FC00: the MP table (end of base memory, as Linux scans for it);
/// - 2 MiB: the protected-mode kernel; the initrd at the top of low RAM.
public struct LinuxLoader: Sendable {
    public static let zeroPageAddress: UInt64 = 0x7000
    public static let commandLineAddress: UInt64 = 0x20000
    public static let commandLineMax = 0x10000 - 1
    public static let kernelAddress: UInt64 = 0x20_0000
    public static let bootStack: UInt64 = 0x8FF0
    /// The MP table's place: the last KiB of base memory.
    public static let mpTableAddress: UInt64 = 0x9_FC00

    /// Where the vCPU starts and what it needs.
    public struct Entry: Sendable, Equatable {
        /// 64-bit entry point (load address + 0x200 for a bzImage).
        public var rip: UInt64
        /// The zero page, passed in `rsi`.
        public var zeroPage: UInt64
        /// Where the kernel was loaded, and how many bytes it needs from there while it decompresses.
        public var kernelStart: UInt64
        public var kernelEnd: UInt64
        /// Initrd placement, if any.
        public var initrd: (address: UInt64, size: UInt64)?

        public static func == (a: Entry, b: Entry) -> Bool {
            a.rip == b.rip && a.zeroPage == b.zeroPage && a.kernelStart == b.kernelStart
                && a.kernelEnd == b.kernelEnd && a.initrd?.address == b.initrd?.address
                && a.initrd?.size == b.initrd?.size
        }
    }

    public init() {}

    /// Loads `kernel` (a bzImage), `initrd` and `commandLine` into `memory`, writes the zero
    /// page with `e820`, and returns the entry state.
    public func load(
        kernel: some ImageSource, initrd: (any ImageSource)?, commandLine: String, e820: [E820Entry],
        into memory: GuestMemory
    ) throws -> Entry {
        let image = try BzImage(header: kernel.prefix(BzImage.headerWindow), fileSize: kernel.byteCount)
        let kernelEnd = Self.kernelAddress + max(UInt64(image.payloadSize), UInt64(image.initSize))
        guard memory.contains(address: Self.kernelAddress, count: Int(kernelEnd - Self.kernelAddress)) else {
            throw LoaderError.tooLittleMemory(
                "the kernel needs \((kernelEnd - Self.kernelAddress) >> 20) MiB above 2 MiB")
        }
        try kernel.read(into: memory.buffer(at: Self.kernelAddress, count: image.payloadSize), at: image.payloadOffset)

        var zeroPage = [UInt8](repeating: 0, count: BootParams.size)
        zeroPage.replaceSubrange(
            BootParams.setupHeaderStart..<(BootParams.setupHeaderStart + image.setupHeader.count),
            with: image.setupHeader)
        zeroPage[BootParams.typeOfLoader] = BootParams.undefinedLoader
        zeroPage[BootParams.loadFlags] |= BootParams.loadedHigh | BootParams.canUseHeap
        zeroPage.storeLE(UInt16(0xFE00), at: BootParams.heapEndPtr)

        let cmdline = Array(commandLine.utf8)
        let cmdlineLimit = min(Int(image.cmdlineSize), Self.commandLineMax)
        guard !cmdline.contains(0) else { throw LoaderError.commandLine("the kernel command line contains a NUL byte") }
        guard cmdline.count <= cmdlineLimit else {
            throw LoaderError.commandLine(
                "the kernel command line is \(cmdline.count) bytes; this kernel takes at most \(cmdlineLimit)")
        }
        try memory.write(cmdline + [0], at: Self.commandLineAddress)
        zeroPage.storeLE(UInt32(Self.commandLineAddress), at: BootParams.cmdLinePtr)

        var placedInitrd: (address: UInt64, size: UInt64)?
        if let initrd, initrd.byteCount > 0 {
            let size = UInt64(initrd.byteCount)
            let address = try Self.initrdAddress(
                size: size, kernelEnd: kernelEnd, maxAddress: UInt64(image.initrdAddrMax), memory: memory)
            try initrd.read(into: memory.buffer(at: address, count: initrd.byteCount), at: 0)
            zeroPage.storeLE(UInt32(truncatingIfNeeded: address), at: BootParams.ramdiskImage)
            zeroPage.storeLE(UInt32(truncatingIfNeeded: size), at: BootParams.ramdiskSize)
            zeroPage.storeLE(UInt32(truncatingIfNeeded: address >> 32), at: BootParams.extRamdiskImage)
            zeroPage.storeLE(UInt32(truncatingIfNeeded: size >> 32), at: BootParams.extRamdiskSize)
            placedInitrd = (address, size)
        }

        guard e820.count <= BootParams.e820MaxEntries else {
            throw LoaderError.unsupported(
                "\(e820.count) e820 entries; the zero page holds \(BootParams.e820MaxEntries)")
        }
        zeroPage[BootParams.e820Entries] = UInt8(e820.count)
        for (i, entry) in e820.enumerated() {
            let offset = BootParams.e820Table + i * 20
            zeroPage.storeLE(entry.address, at: offset)
            zeroPage.storeLE(entry.size, at: offset + 8)
            zeroPage.storeLE(entry.kind.rawValue, at: offset + 16)
        }
        try memory.write(zeroPage, at: Self.zeroPageAddress)
        return Entry(
            rip: Self.kernelAddress + 0x200, zeroPage: Self.zeroPageAddress, kernelStart: Self.kernelAddress,
            kernelEnd: kernelEnd, initrd: placedInitrd)
    }

    /// The highest page-aligned address below the end of the first RAM region (and below
    /// `maxAddress`) where `size` bytes fit above the kernel.
    static func initrdAddress(size: UInt64, kernelEnd: UInt64, maxAddress: UInt64, memory: GuestMemory) throws -> UInt64
    {
        guard let low = memory.regions.first else { throw LoaderError.tooLittleMemory("no RAM") }
        let top = min(low.guestEnd, maxAddress &+ 1)
        let pageMask = ~(GuestMemory.pageSize - 1)
        guard size < top, (top - size) & pageMask >= kernelEnd else {
            throw LoaderError.tooLittleMemory(
                "the initrd (\(size >> 20) MiB) does not fit in guest RAM above the kernel")
        }
        return (top - size) & pageMask
    }

    /// Standard e820 map for `memory`: base memory up to the MP table, then RAM from 1 MiB.
    public static func e820Map(for memory: GuestMemory) -> [E820Entry] {
        var map = [E820Entry(address: 0, size: mpTableAddress, kind: .ram)]
        map.append(E820Entry(address: mpTableAddress, size: 0xA_0000 - mpTableAddress, kind: .reserved))
        for region in memory.regions {
            let start = max(region.guestAddress, 0x10_0000)
            guard region.guestEnd > start else { continue }
            map.append(E820Entry(address: start, size: region.guestEnd - start, kind: .ram))
        }
        return map
    }
}

/// Why a kernel could not be loaded.
public enum LoaderError: Error, Equatable, CustomStringConvertible {
    case notAKernel(String)
    case unsupported(String)
    case tooLittleMemory(String)
    case commandLine(String)

    public var description: String {
        switch self {
        case .notAKernel(let why): return "not a Linux kernel: \(why)"
        case .unsupported(let why): return "unsupported kernel: \(why)"
        case .tooLittleMemory(let why): return "not enough guest memory: \(why)"
        case .commandLine(let why): return why
        }
    }
}
