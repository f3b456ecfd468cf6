import GuestMemory

/// A parsed ELF64 x86-64 `vmlinux`: its `PT_LOAD` segments (placed at their physical addresses)
/// and the 32-bit PVH entry point from its `XEN_ELFNOTE_PHYS32_ENTRY` note.
///
/// Parsing reads only the ELF header, the program header table and the `PT_NOTE` segments; every
/// offset, size and address read from the file is checked, with arithmetic that cannot overflow,
/// before it is used. ``load(from:into:)`` then copies the segments straight from the image into
/// guest memory.
struct ElfKernel: Sendable, Equatable {
    /// One `PT_LOAD` segment: `fileSize` bytes at `offset` in the file go to guest-physical
    /// `address`, followed by zeros up to `memorySize`.
    struct Segment: Sendable, Equatable {
        /// Index of the program header, for messages.
        var index: Int
        var offset: UInt64
        /// `p_paddr`: vmlinux links at virtual addresses in the kernel's high mapping (or 0 for
        /// the per-CPU section); where it must be put in RAM is the physical address.
        var address: UInt64
        var fileSize: UInt64
        var memorySize: UInt64

        /// One past the last byte (checked at parse time not to wrap).
        var end: UInt64 { address + memorySize }
    }

    /// Loadable segments with a non-zero memory size, in program-header order.
    let segments: [Segment]
    /// The PVH entry point: where the vCPU starts in 32-bit protected mode.
    let pvhEntry: UInt32

    /// The lowest guest-physical address a segment may use: below it lie the boot structures
    /// (GDT, start info, command line, MP table, ACPI tables).
    static let lowestLoadAddress: UInt64 = 0x10_0000
    /// Most program headers accepted (a vmlinux has about five).
    static let maxProgramHeaders = 256
    /// Largest `PT_NOTE` segment read (Linux's is about 500 bytes).
    static let maxNoteSegmentSize: UInt64 = 1 << 20

    // MARK: - ELF constants

    /// Field offsets and values from the ELF64 specification and `<elf.h>`.
    enum ELF {
        static let magic: [UInt8] = [0x7F, 0x45, 0x4C, 0x46]  // "\x7FELF"
        static let headerSize = 64
        static let programHeaderSize = 56

        static let identClass = 4
        static let identData = 5
        static let identVersion = 6
        static let class64: UInt8 = 2
        static let dataLittleEndian: UInt8 = 1
        static let versionCurrent: UInt8 = 1

        static let type = 16
        static let machine = 18
        static let version = 20
        static let programHeaderOffset = 32
        static let programHeaderEntrySize = 54
        static let programHeaderCount = 56
        static let typeExecutable: UInt16 = 2
        static let machineX8664: UInt16 = 62
        /// `e_phnum` value meaning "the count is in section header 0".
        static let programHeaderCountExtended: UInt16 = 0xFFFF

        static let segmentLoad: UInt32 = 1
        static let segmentNote: UInt32 = 4

        /// The note owner and type Linux uses for its PVH entry point (`xen/interface/elfnote.h`).
        static let xenNoteName: [UInt8] = Array("Xen".utf8)
        static let xenPhys32Entry: UInt32 = 18
    }

    /// Whether `prefix` (the first bytes of a file) starts with the ELF magic.
    static func hasMagic(_ prefix: [UInt8]) -> Bool { prefix.starts(with: ELF.magic) }

    // MARK: - Parsing

    /// Parses the ELF header, program headers and notes of `image`.
    init(from image: some ImageSource) throws {
        let fileSize = UInt64(max(image.byteCount, 0))
        let header = try image.prefix(ELF.headerSize)
        guard header.count == ELF.headerSize else {
            throw LoaderError.notAKernel(
                "the ELF header is \(ELF.headerSize) bytes but the file has only \(image.byteCount)")
        }
        try Self.checkIdentification(header)

        let phoff = header.loadLE(UInt64.self, at: ELF.programHeaderOffset) ?? 0
        let phentsize = Int(header.loadLE(UInt16.self, at: ELF.programHeaderEntrySize) ?? 0)
        let phnum = header.loadLE(UInt16.self, at: ELF.programHeaderCount) ?? 0
        guard phentsize == ELF.programHeaderSize else {
            throw LoaderError.notAKernel(
                "ELF program headers are \(phentsize) bytes each; ELF64 uses \(ELF.programHeaderSize)")
        }
        guard phnum != ELF.programHeaderCountExtended else {
            throw LoaderError.unsupported("the ELF file has 65535 or more program headers (PN_XNUM)")
        }
        guard phnum > 0 else { throw LoaderError.notAKernel("the ELF file has no program headers") }
        guard Int(phnum) <= Self.maxProgramHeaders else {
            throw LoaderError.unsupported(
                "the ELF file has \(phnum) program headers; at most \(Self.maxProgramHeaders) are accepted")
        }
        let tableSize = UInt64(phnum) * UInt64(phentsize)
        let (tableEnd, tableOverflow) = phoff.addingReportingOverflow(tableSize)
        guard !tableOverflow, tableEnd <= fileSize else {
            throw LoaderError.notAKernel(
                "the ELF program header table (\(tableSize) bytes at offset \(hex(phoff))) runs past the end of the \(fileSize)-byte file"
            )
        }
        var table = [UInt8](repeating: 0, count: Int(tableSize))
        try table.withUnsafeMutableBytes { try image.read(into: $0, at: Int(phoff)) }

        var segments: [Segment] = []
        var pvhEntry: UInt32?
        for index in 0..<Int(phnum) {
            let base = index * ELF.programHeaderSize
            let type = table.loadLE(UInt32.self, at: base) ?? 0
            let offset = table.loadLE(UInt64.self, at: base + 8) ?? 0
            let physical = table.loadLE(UInt64.self, at: base + 24) ?? 0
            let fileBytes = table.loadLE(UInt64.self, at: base + 32) ?? 0
            let memoryBytes = table.loadLE(UInt64.self, at: base + 40) ?? 0
            let align = table.loadLE(UInt64.self, at: base + 48) ?? 0
            switch type {
            case ELF.segmentLoad:
                let segment = Segment(
                    index: index, offset: offset, address: physical, fileSize: fileBytes, memorySize: memoryBytes)
                try Self.checkLoad(segment, fileSize: fileSize)
                if memoryBytes > 0 { segments.append(segment) }
            case ELF.segmentNote:
                guard pvhEntry == nil else { continue }
                try Self.checkInFile(index: index, what: "PT_NOTE", offset: offset, size: fileBytes, fileSize: fileSize)
                guard fileBytes <= Self.maxNoteSegmentSize else {
                    throw LoaderError.unsupported(
                        "ELF segment \(index) (PT_NOTE) is \(fileBytes) bytes; at most \(Self.maxNoteSegmentSize) are read"
                    )
                }
                var notes = [UInt8](repeating: 0, count: Int(fileBytes))
                try notes.withUnsafeMutableBytes { try image.read(into: $0, at: Int(offset)) }
                pvhEntry = try Self.pvhEntry(inNotes: notes, alignment: align == 8 ? 8 : 4)
            default:
                continue
            }
        }

        guard let pvhEntry else {
            throw LoaderError.unsupported(
                "the ELF kernel has no PVH entry point (XEN_ELFNOTE_PHYS32_ENTRY); use a kernel built with CONFIG_PVH or its bzImage"
            )
        }
        guard !segments.isEmpty else { throw LoaderError.notAKernel("the ELF file has no PT_LOAD segment") }
        let entry = UInt64(pvhEntry)
        guard segments.contains(where: { entry >= $0.address && entry - $0.address < $0.fileSize }) else {
            throw LoaderError.notAKernel(
                "the PVH entry point \(hex(entry)) is not inside the file bytes of any PT_LOAD segment")
        }
        self.segments = segments
        self.pvhEntry = pvhEntry
    }

    /// Checks `e_ident`, `e_type`, `e_machine` and `e_version` of a 64-byte header.
    static func checkIdentification(_ header: [UInt8]) throws(LoaderError) {
        guard hasMagic(header) else { throw .notAKernel("no ELF magic") }
        let elfClass = header[ELF.identClass]
        guard elfClass == ELF.class64 else {
            throw .unsupported("ELF class \(elfClass) is not ELFCLASS64 (2); only a 64-bit vmlinux boots")
        }
        let data = header[ELF.identData]
        guard data == ELF.dataLittleEndian else {
            throw .unsupported("ELF data encoding \(data) is not little-endian (ELFDATA2LSB, 1)")
        }
        let identVersion = header[ELF.identVersion]
        guard identVersion == ELF.versionCurrent else {
            throw .notAKernel("ELF identification version \(identVersion) is not EV_CURRENT (1)")
        }
        let type = header.loadLE(UInt16.self, at: ELF.type) ?? 0
        guard type == ELF.typeExecutable else {
            throw .unsupported("ELF type \(type) is not ET_EXEC (2); a vmlinux is an executable")
        }
        let machine = header.loadLE(UInt16.self, at: ELF.machine) ?? 0
        guard machine == ELF.machineX8664 else {
            throw .unsupported("ELF machine \(machine) is not EM_X86_64 (62)")
        }
        let version = header.loadLE(UInt32.self, at: ELF.version) ?? 0
        guard version == UInt32(ELF.versionCurrent) else {
            throw .notAKernel("ELF version \(version) is not EV_CURRENT (1)")
        }
    }

    /// Checks that `size` bytes at `offset` lie inside a file of `fileSize` bytes.
    static func checkInFile(
        index: Int, what: String, offset: UInt64, size: UInt64, fileSize: UInt64
    ) throws(LoaderError) {
        let (end, overflow) = offset.addingReportingOverflow(size)
        guard !overflow, end <= fileSize else {
            throw .notAKernel(
                "ELF segment \(index) (\(what)): \(size) bytes at offset \(hex(offset)) run past the end of the \(fileSize)-byte file"
            )
        }
    }

    /// Checks a `PT_LOAD` segment against the file and the address space (guest RAM is checked
    /// when loading).
    static func checkLoad(_ segment: Segment, fileSize: UInt64) throws(LoaderError) {
        let index = segment.index
        guard segment.fileSize <= segment.memorySize else {
            throw .notAKernel(
                "ELF segment \(index): p_filesz \(hex(segment.fileSize)) is larger than p_memsz \(hex(segment.memorySize))"
            )
        }
        try checkInFile(
            index: index, what: "PT_LOAD", offset: segment.offset, size: segment.fileSize, fileSize: fileSize)
        guard segment.memorySize > 0 else { return }
        let (_, overflow) = segment.address.addingReportingOverflow(segment.memorySize)
        guard !overflow else {
            throw .notAKernel(
                "ELF segment \(index) at \(hex(segment.address)) with \(hex(segment.memorySize)) bytes wraps around the address space"
            )
        }
        guard segment.address >= lowestLoadAddress else {
            throw .unsupported(
                "ELF segment \(index) loads at \(hex(segment.address)), below 1 MiB where the boot structures live")
        }
    }

    // MARK: - Notes

    /// Walks the notes of one `PT_NOTE` segment (`namesz`, `descsz`, `type`, then name and
    /// descriptor, each padded to `alignment`) and returns the `XEN_ELFNOTE_PHYS32_ENTRY` value,
    /// or nil if there is none.
    static func pvhEntry(inNotes notes: [UInt8], alignment: UInt64 = 4) throws(LoaderError) -> UInt32? {
        let count = UInt64(notes.count)
        var offset: UInt64 = 0
        while offset < count {
            guard count - offset >= 12,
                let nameSize = notes.loadLE(UInt32.self, at: Int(offset)),
                let descSize = notes.loadLE(UInt32.self, at: Int(offset) + 4),
                let type = notes.loadLE(UInt32.self, at: Int(offset) + 8)
            else {
                throw .notAKernel("the ELF note at offset \(offset) of a \(count)-byte PT_NOTE segment is truncated")
            }
            // All in UInt64: a 32-bit size padded and added to an offset below 1 MiB cannot overflow.
            // Padding is relative to the note's start: with 8-byte notes, a 4-byte name after the
            // 12-byte header puts the descriptor at 16, not 20.
            let nameStart = offset + 12
            let descStart = offset + padded(12 + UInt64(nameSize), to: alignment)
            let descEnd = descStart + UInt64(descSize)
            guard descEnd <= count else {
                throw .notAKernel(
                    "the ELF note at offset \(offset) (name \(nameSize) bytes, descriptor \(descSize) bytes) runs past the end of its \(count)-byte PT_NOTE segment"
                )
            }
            let name = notes[Int(nameStart)..<Int(nameStart + UInt64(nameSize))]
            if type == ELF.xenPhys32Entry, name.prefix(while: { $0 != 0 }).elementsEqual(ELF.xenNoteName) {
                let desc = Array(notes[Int(descStart)..<Int(descEnd)])
                let value: UInt64
                switch desc.count {
                case 4: value = UInt64(desc.loadLE(UInt32.self, at: 0) ?? 0)
                case 8: value = desc.loadLE(UInt64.self, at: 0) ?? 0
                default:
                    throw .notAKernel("the XEN_ELFNOTE_PHYS32_ENTRY note is \(desc.count) bytes; expected 4 or 8")
                }
                guard let entry = UInt32(exactly: value) else {
                    throw .unsupported("the PVH entry point \(hex(value)) is not below 4 GiB")
                }
                return entry
            }
            offset = min(padded(descEnd, to: alignment), count)
        }
        return nil
    }

    static func padded(_ value: UInt64, to alignment: UInt64) -> UInt64 {
        (value + alignment - 1) / alignment * alignment
    }

    // MARK: - Loading

    /// The lowest guest-physical address any segment uses.
    var start: UInt64 { segments.map(\.address).min() ?? 0 }
    /// One past the highest guest-physical byte any segment uses (including its zero fill).
    var end: UInt64 { segments.map(\.end).max() ?? 0 }

    /// Checks that every segment fits in guest RAM, then copies each one from `image` to its
    /// physical address and zero-fills the rest of its memory size. Nothing is written unless
    /// all segments fit.
    func load(from image: some ImageSource, into memory: GuestMemory) throws {
        for segment in segments {
            guard let count = Int(exactly: segment.memorySize), memory.contains(address: segment.address, count: count)
            else {
                throw LoaderError.tooLittleMemory(
                    "ELF segment \(segment.index) needs \(hex(segment.address))..\(hex(segment.end)), outside guest RAM (\(memory.size >> 20) MiB)"
                )
            }
        }
        for segment in segments {
            let target = try memory.buffer(at: segment.address, count: Int(segment.memorySize))
            let fileBytes = Int(segment.fileSize)
            if fileBytes > 0 {
                try image.read(
                    into: UnsafeMutableRawBufferPointer(rebasing: target[0..<fileBytes]), at: Int(segment.offset))
            }
            if fileBytes < target.count {
                try memory.zero(at: segment.address + segment.fileSize, count: target.count - fileBytes)
            }
        }
    }
}
