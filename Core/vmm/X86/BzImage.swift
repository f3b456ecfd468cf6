import GuestMemory

/// A parsed bzImage: the setup header (copied into the zero page) and where the protected-mode
/// payload lies in the file. (An ELF vmlinux never gets here: ``LinuxLoader`` sends it down the
/// PVH path.)
struct BzImage {
    /// How much of the file's start holds everything the parser reads (setup_sects is at most 255).
    static let headerWindow = 0x8000

    let setupHeader: [UInt8]
    let payloadOffset: Int
    let payloadSize: Int
    let initSize: UInt32
    let cmdlineSize: UInt32
    let initrdAddrMax: UInt32

    /// Parses a whole file held in memory.
    init(_ file: [UInt8]) throws(LoaderError) {
        try self.init(header: Array(file[..<min(file.count, Self.headerWindow)]), fileSize: file.count)
    }

    /// Parses the first bytes of a file of `fileSize` bytes.
    init(header file: [UInt8], fileSize: Int) throws(LoaderError) {
        guard fileSize >= 0x1000, file.count >= 0x1000 else { throw .notAKernel("the file is only \(fileSize) bytes") }
        guard file.loadLE(UInt16.self, at: BootParams.bootFlag) == 0xAA55,
            file.loadLE(UInt32.self, at: BootParams.header) == BootParams.headerMagic
        else { throw .notAKernel("no boot sector signature or \"HdrS\" header") }
        let version = file.loadLE(UInt16.self, at: BootParams.version) ?? 0
        guard version >= 0x020C else {
            throw .unsupported("boot protocol \(version >> 8).\(version & 0xFF) is older than 2.12 (no 64-bit entry)")
        }
        let xloadflags = file.loadLE(UInt16.self, at: BootParams.xLoadFlags) ?? 0
        guard xloadflags & BootParams.xlfKernel64 != 0 else {
            throw .unsupported("the kernel has no 64-bit entry point")
        }
        let sects = Int(file[BootParams.setupSects])
        let setupBytes = ((sects == 0 ? 4 : sects) + 1) * 512
        guard setupBytes < file.count else {
            throw .notAKernel("the setup code (\(setupBytes) bytes) fills the whole file")
        }
        // The header runs from 0x1F1 to 0x202 + the jump's offset byte.
        let headerEnd = min(0x202 + Int(file[BootParams.jump + 1]), 0x280)
        setupHeader = Array(file[BootParams.setupHeaderStart..<headerEnd])
        payloadOffset = setupBytes
        payloadSize = fileSize - setupBytes
        initSize = file.loadLE(UInt32.self, at: BootParams.initSize) ?? 0
        cmdlineSize = file.loadLE(UInt32.self, at: BootParams.cmdlineSize) ?? 255
        initrdAddrMax = file.loadLE(UInt32.self, at: BootParams.initrdAddrMax) ?? 0x37FF_FFFF
    }
}
