import GuestMemory

/// Loads a Linux kernel: a bzImage for the x86 64-bit boot protocol (boot protocol 2.12 or later
/// with `XLF_KERNEL_64`), or an ELF vmlinux for the PVH boot ABI (it must carry the
/// `XEN_ELFNOTE_PHYS32_ENTRY` note, as kernels built with `CONFIG_PVH` do). Anything else is
/// refused with an error that says what the file is not.
///
/// Guest-physical layout used (below 1 MiB unless noted):
/// - 0x500..0x1000: GDT and IDT (``LongModeLayout``; ``ProtectedMode`` uses the same place);
/// - 0x6000: the PVH start info; 0x6040: its module list (the initrd); 0x6080..0x6C80: its
///   memory map (at most 128 entries of 24 bytes);
/// - 0x7000: the zero page (bzImage); 0x8FF0: the long-mode boot stack, growing down;
/// - 0x9000..0xF000: boot page tables (bzImage); 0x20000: the command line;
/// - 0x9FC00: the MP table (end of base memory, as Linux scans for it); 0xE0000: the ACPI tables;
/// - a bzImage's protected-mode kernel at 2 MiB, or a vmlinux's `PT_LOAD` segments at their
///   physical addresses (1 MiB or above); the initrd at the top of low RAM, above the kernel.
public struct LinuxLoader: Sendable {
    public static let zeroPageAddress: UInt64 = 0x7000
    public static let commandLineAddress: UInt64 = 0x20000
    public static let commandLineMax = 0x10000 - 1
    public static let kernelAddress: UInt64 = 0x20_0000
    public static let bootStack: UInt64 = 0x8FF0
    /// The MP table's place: the last KiB of base memory.
    public static let mpTableAddress: UInt64 = 0x9_FC00

    // MARK: - PVH layout

    /// The PVH start info (`struct hvm_start_info`, 56 bytes), passed in `ebx`.
    public static let pvhStartInfoAddress: UInt64 = 0x6000
    /// The PVH module list: one entry, the initrd.
    public static let pvhModuleListAddress: UInt64 = 0x6040
    /// The PVH memory map, ``BootParams/e820MaxEntries`` entries at most.
    public static let pvhMemoryMapAddress: UInt64 = 0x6080
    /// The longest PVH command line without its NUL (Linux's `COMMAND_LINE_SIZE` is 2048 with it).
    public static let pvhCommandLineMax = 2047
    /// Highest initrd byte for a PVH kernel (Linux keeps the initrd's address in 32 bits; x86-64
    /// bzImages advertise this `initrd_addr_max`).
    public static let pvhInitrdAddressMax: UInt64 = 0x7FFF_FFFF

    // MARK: - Entry

    /// Where the kernel was put and how the bootstrap processor starts (``BootCPU`` applies it).
    public struct Entry: Sendable, Equatable {
        /// How the bootstrap processor starts.
        public enum BootState: Sendable, Equatable {
            /// 64-bit long mode, paging on (bzImage): `rip` is the load address + 0x200, and
            /// the zero page's address goes in `rsi`.
            case longMode(rip: UInt64, zeroPage: UInt64)
            /// 32-bit protected mode, paging off (PVH): `entry` is the
            /// `XEN_ELFNOTE_PHYS32_ENTRY` address, and the start info's address goes in `ebx`.
            case pvh(entry: UInt32, startInfo: UInt32)

            /// How the boot is named in logs.
            public var name: String {
                switch self {
                case .longMode: return "bzImage, 64-bit boot protocol"
                case .pvh: return "ELF, PVH"
                }
            }
        }

        /// How the bootstrap processor starts.
        public var boot: BootState
        /// Where the kernel was loaded, and how many bytes it needs from there (while it
        /// decompresses, for a bzImage; up to the end of its last segment's zero fill, for an ELF).
        public var kernelStart: UInt64
        public var kernelEnd: UInt64
        /// Initrd placement, if any.
        public var initrd: (address: UInt64, size: UInt64)?

        public init(boot: BootState, kernelStart: UInt64, kernelEnd: UInt64, initrd: (address: UInt64, size: UInt64)?) {
            self.boot = boot
            self.kernelStart = kernelStart
            self.kernelEnd = kernelEnd
            self.initrd = initrd
        }

        /// The long-mode entry point; for a PVH entry, its 32-bit entry point (which only
        /// ``BootCPU/start(_:memory:entry:)`` starts correctly).
        @available(*, deprecated, message: "use boot, or BootCPU.start(_:memory:entry:)")
        public var rip: UInt64 {
            switch boot {
            case .longMode(let rip, _): return rip
            case .pvh(let entry, _): return UInt64(entry)
            }
        }

        /// The zero page's address; for a PVH entry, the start info's.
        @available(*, deprecated, message: "use boot, or BootCPU.start(_:memory:entry:)")
        public var zeroPage: UInt64 {
            switch boot {
            case .longMode(_, let zeroPage): return zeroPage
            case .pvh(_, let startInfo): return UInt64(startInfo)
            }
        }

        public static func == (a: Entry, b: Entry) -> Bool {
            a.boot == b.boot && a.kernelStart == b.kernelStart && a.kernelEnd == b.kernelEnd
                && a.initrd?.address == b.initrd?.address && a.initrd?.size == b.initrd?.size
        }
    }

    public init() {}

    // MARK: - Loading

    /// Loads `kernel` (a bzImage or an ELF vmlinux with a PVH entry point), `initrd` and
    /// `commandLine` into `memory`, describes RAM to the kernel with `e820` (in the zero page, or
    /// in the PVH memory map), and returns how the bootstrap processor starts.
    ///
    /// For a PVH kernel the start info points at the ACPI RSDP at ``ACPITables/rsdpAddress``,
    /// which the caller writes.
    public func load(
        kernel: some ImageSource, initrd: (any ImageSource)?, commandLine: String, e820: [E820Entry],
        into memory: GuestMemory
    ) throws -> Entry {
        let header = try kernel.prefix(BzImage.headerWindow)
        if ElfKernel.hasMagic(header) {
            return try loadPVH(kernel: kernel, initrd: initrd, commandLine: commandLine, e820: e820, into: memory)
        }
        return try loadBzImage(
            kernel: kernel, header: header, initrd: initrd, commandLine: commandLine, e820: e820, into: memory)
    }

    /// The bzImage path: the payload at ``kernelAddress``, the zero page at ``zeroPageAddress``.
    func loadBzImage(
        kernel: some ImageSource, header: [UInt8], initrd: (any ImageSource)?, commandLine: String,
        e820: [E820Entry], into memory: GuestMemory
    ) throws -> Entry {
        let image = try BzImage(header: header, fileSize: kernel.byteCount)
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

        try Self.writeCommandLine(commandLine, limit: min(Int(image.cmdlineSize), Self.commandLineMax), into: memory)
        zeroPage.storeLE(UInt32(Self.commandLineAddress), at: BootParams.cmdLinePtr)

        let placedInitrd = try Self.placeInitrd(
            initrd, kernelEnd: kernelEnd, maxAddress: UInt64(image.initrdAddrMax), memory: memory)
        if let (address, size) = placedInitrd {
            zeroPage.storeLE(UInt32(truncatingIfNeeded: address), at: BootParams.ramdiskImage)
            zeroPage.storeLE(UInt32(truncatingIfNeeded: size), at: BootParams.ramdiskSize)
            zeroPage.storeLE(UInt32(truncatingIfNeeded: address >> 32), at: BootParams.extRamdiskImage)
            zeroPage.storeLE(UInt32(truncatingIfNeeded: size >> 32), at: BootParams.extRamdiskSize)
        }

        try Self.checkE820Count(e820)
        zeroPage[BootParams.e820Entries] = UInt8(e820.count)
        for (i, entry) in e820.enumerated() {
            let offset = BootParams.e820Table + i * 20
            zeroPage.storeLE(entry.address, at: offset)
            zeroPage.storeLE(entry.size, at: offset + 8)
            zeroPage.storeLE(entry.kind.rawValue, at: offset + 16)
        }
        try memory.write(zeroPage, at: Self.zeroPageAddress)
        return Entry(
            boot: .longMode(rip: Self.kernelAddress + 0x200, zeroPage: Self.zeroPageAddress),
            kernelStart: Self.kernelAddress, kernelEnd: kernelEnd, initrd: placedInitrd)
    }

    // MARK: - Shared steps

    /// Checks `commandLine` (no NUL, at most `limit` bytes) and writes it NUL-terminated at
    /// ``commandLineAddress``.
    static func writeCommandLine(_ commandLine: String, limit: Int, into memory: GuestMemory) throws {
        let bytes = Array(commandLine.utf8)
        try checkCommandLine(bytes, limit: limit)
        try memory.write(bytes + [0], at: commandLineAddress)
    }

    static func checkCommandLine(_ bytes: [UInt8], limit: Int) throws(LoaderError) {
        guard !bytes.contains(0) else { throw .commandLine("the kernel command line contains a NUL byte") }
        guard bytes.count <= limit else {
            throw .commandLine("the kernel command line is \(bytes.count) bytes; this kernel takes at most \(limit)")
        }
    }

    /// More entries than the zero page (and Linux's copy of the PVH memory map) holds are refused.
    static func checkE820Count(_ e820: [E820Entry]) throws(LoaderError) {
        guard e820.count <= BootParams.e820MaxEntries else {
            throw .unsupported("\(e820.count) e820 entries; the zero page holds \(BootParams.e820MaxEntries)")
        }
    }

    /// Copies a non-empty `initrd` to ``initrdAddress(size:kernelEnd:maxAddress:memory:)`` and
    /// returns where it went; nil for no initrd or an empty one.
    static func placeInitrd(
        _ initrd: (any ImageSource)?, kernelEnd: UInt64, maxAddress: UInt64, memory: GuestMemory
    ) throws -> (address: UInt64, size: UInt64)? {
        guard let initrd, initrd.byteCount > 0 else { return nil }
        let size = UInt64(initrd.byteCount)
        let address = try initrdAddress(size: size, kernelEnd: kernelEnd, maxAddress: maxAddress, memory: memory)
        try initrd.read(into: memory.buffer(at: address, count: initrd.byteCount), at: 0)
        return (address, size)
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

/// `0x`-prefixed hexadecimal, for messages about addresses and offsets.
func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }
