/// Builds ELF64 files byte by byte for the loader tests: a header, a program header table, and
/// contents placed at chosen offsets. Every field can be set to a bad value.
struct ELFBuilder {
    /// One program header (56 bytes).
    struct ProgramHeader {
        var type: UInt32 = 1  // PT_LOAD
        var flags: UInt32 = 5  // R E
        var offset: UInt64 = 0
        var virtualAddress: UInt64 = 0
        var physicalAddress: UInt64 = 0
        var fileSize: UInt64 = 0
        var memorySize: UInt64 = 0
        var align: UInt64 = 0x1000

        static func note(offset: UInt64, size: UInt64) -> ProgramHeader {
            ProgramHeader(type: 4, flags: 4, offset: offset, fileSize: size, memorySize: size, align: 4)
        }
    }

    var elfClass: UInt8 = 2  // ELFCLASS64
    var data: UInt8 = 1  // ELFDATA2LSB
    var identVersion: UInt8 = 1
    var type: UInt16 = 2  // ET_EXEC
    var machine: UInt16 = 62  // EM_X86_64
    var version: UInt32 = 1
    var entry: UInt64 = 0x100_0000
    var programHeaderOffset: UInt64 = 64
    var programHeaderEntrySize: UInt16 = 56
    /// `e_phnum`; nil writes the number of ``programHeaders``.
    var programHeaderCount: UInt16?
    var programHeaders: [ProgramHeader] = []
    /// Bytes to place in the file: (offset, bytes).
    var contents: [(offset: Int, bytes: [UInt8])] = []
    /// Total file size; nil: just large enough for everything placed.
    var fileSize: Int?

    var bytes: [UInt8] {
        var header = [UInt8](repeating: 0, count: 64)
        header.replaceSubrange(0..<4, with: [0x7F, 0x45, 0x4C, 0x46])
        header[4] = elfClass
        header[5] = data
        header[6] = identVersion
        header.put(type, at: 16)
        header.put(machine, at: 18)
        header.put(version, at: 20)
        header.put(entry, at: 24)
        header.put(programHeaderOffset, at: 32)
        header.put(UInt16(64), at: 52)  // e_ehsize
        header.put(programHeaderEntrySize, at: 54)
        header.put(programHeaderCount ?? UInt16(programHeaders.count), at: 56)

        var table: [UInt8] = []
        for ph in programHeaders {
            var entry = [UInt8](repeating: 0, count: 56)
            entry.put(ph.type, at: 0)
            entry.put(ph.flags, at: 4)
            entry.put(ph.offset, at: 8)
            entry.put(ph.virtualAddress, at: 16)
            entry.put(ph.physicalAddress, at: 24)
            entry.put(ph.fileSize, at: 32)
            entry.put(ph.memorySize, at: 40)
            entry.put(ph.align, at: 48)
            table += entry
        }

        var pieces: [(offset: Int, bytes: [UInt8])] = [(0, header)]
        if let tableOffset = Int(exactly: programHeaderOffset), tableOffset < 1 << 24 {
            pieces.append((tableOffset, table))
        }
        pieces += contents
        let needed = pieces.map { $0.offset + $0.bytes.count }.max() ?? 0
        var file = [UInt8](repeating: 0, count: fileSize.map { max($0, needed) } ?? needed)
        for piece in pieces {
            file.replaceSubrange(piece.offset..<(piece.offset + piece.bytes.count), with: piece.bytes)
        }
        if let fileSize, fileSize < file.count { file.removeLast(file.count - fileSize) }
        return file
    }

    // MARK: - Notes

    /// One ELF note: namesz, descsz, type, then the NUL-terminated name and the descriptor, each
    /// padded to 4 bytes.
    static func note(name: String, type: UInt32, desc: [UInt8]) -> [UInt8] {
        let nameBytes = Array(name.utf8) + [0]
        var note = [UInt8](repeating: 0, count: 12)
        note.put(UInt32(nameBytes.count), at: 0)
        note.put(UInt32(desc.count), at: 4)
        note.put(type, at: 8)
        note += nameBytes + [UInt8](repeating: 0, count: (4 - nameBytes.count % 4) % 4)
        note += desc + [UInt8](repeating: 0, count: (4 - desc.count % 4) % 4)
        return note
    }

    /// A `XEN_ELFNOTE_PHYS32_ENTRY` note with a 4- or 8-byte descriptor.
    static func pvhNote(entry: UInt64, descSize: Int = 8) -> [UInt8] {
        note(name: "Xen", type: 18, desc: (0..<descSize).map { UInt8(truncatingIfNeeded: entry >> (8 * $0)) })
    }

    /// Notes like Debian's before the PVH one: other Xen notes, and a GNU build ID of the same type number.
    static let otherNotes: [UInt8] =
        note(name: "Xen", type: 6, desc: Array("linux\0".utf8))
        + note(name: "Xen", type: 17, desc: [0x01, 0x88, 0, 0])
        + note(name: "GNU", type: 18, desc: [1, 2, 3, 4, 5, 6, 7, 8])
        + note(name: "Linux", type: 1, desc: [0, 0, 0, 0])

    // MARK: - A good kernel

    static let textAddress: UInt64 = 0x100_0000
    static let textOffset = 0x1000
    static let textSize = 0x2000
    static let dataAddress: UInt64 = 0x200_0000
    static let dataOffset = 0x3000
    static let dataFileSize = 0x800
    static let dataMemorySize = 0x3000
    static let noteOffset = 0x200
    static let pvhEntry: UInt64 = 0x100_0850

    static func textByte(_ i: Int) -> UInt8 { UInt8(truncatingIfNeeded: i &* 7 &+ i >> 8 &+ 3) }
    static func dataByte(_ i: Int) -> UInt8 { UInt8(truncatingIfNeeded: i &* 13 &+ 0x5A) }
    static var text: [UInt8] { (0..<textSize).map(textByte) }
    static var data: [UInt8] { (0..<dataFileSize).map(dataByte) }

    /// A vmlinux-like file: text at 16 MiB linked in the high mapping, data at 32 MiB linked at
    /// virtual 0 (like the per-CPU segment) with a bss tail, and a PT_NOTE holding `notes`.
    static func kernel(notes: [UInt8] = otherNotes + pvhNote(entry: pvhEntry)) -> ELFBuilder {
        ELFBuilder(
            programHeaders: [
                ProgramHeader(
                    offset: UInt64(textOffset), virtualAddress: 0xFFFF_FFFF_8100_0000, physicalAddress: textAddress,
                    fileSize: UInt64(textSize), memorySize: UInt64(textSize)),
                ProgramHeader(
                    flags: 6, offset: UInt64(dataOffset), virtualAddress: 0, physicalAddress: dataAddress,
                    fileSize: UInt64(dataFileSize), memorySize: UInt64(dataMemorySize)),
                .note(offset: UInt64(noteOffset), size: UInt64(notes.count)),
            ],
            contents: [(noteOffset, notes), (textOffset, text), (dataOffset, data)])
    }
}
