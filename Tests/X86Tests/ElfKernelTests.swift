import GuestMemory
import Testing

@testable import X86

@Suite("ELF vmlinux parsing")
struct ElfKernelTests {
    typealias PH = ELFBuilder.ProgramHeader

    func parseError(_ file: [UInt8]) -> LoaderError? {
        loaderError { _ = try ElfKernel(from: file) }
    }

    // MARK: - Good files

    @Test("PT_LOAD segments are taken at p_paddr, not p_vaddr, with their file and memory sizes")
    func segments() throws {
        let elf = try ElfKernel(from: ELFBuilder.kernel().bytes)
        #expect(
            elf.segments == [
                .init(index: 0, offset: 0x1000, address: 0x100_0000, fileSize: 0x2000, memorySize: 0x2000),
                .init(index: 1, offset: 0x3000, address: 0x200_0000, fileSize: 0x800, memorySize: 0x3000),
            ])
        #expect(elf.start == 0x100_0000)
        #expect(elf.end == 0x200_3000)
    }

    @Test("8-byte aligned notes pad from the note's start: a 4-byte name puts the descriptor at 16")
    func eightByteAlignedNotes() throws {
        // A GNU property note as static binaries carry it (p_align 8), then a Xen PVH note.
        var notes = [UInt8](repeating: 0, count: 12)
        notes.storeLE(UInt32(4), at: 0)
        notes.storeLE(UInt32(16), at: 4)
        notes.storeLE(UInt32(5), at: 8)  // NT_GNU_PROPERTY_TYPE_0
        notes += Array("GNU\0".utf8) + [UInt8](repeating: 0xAB, count: 16)
        #expect(notes.count == 32)
        #expect(try ElfKernel.pvhEntry(inNotes: notes, alignment: 8) == nil)
        var xen = [UInt8](repeating: 0, count: 12)
        xen.storeLE(UInt32(4), at: 0)
        xen.storeLE(UInt32(8), at: 4)
        xen.storeLE(UInt32(18), at: 8)  // XEN_ELFNOTE_PHYS32_ENTRY
        xen += Array("Xen\0".utf8) + [UInt8](repeating: 0, count: 8)
        xen.storeLE(UInt64(0x100_0850), at: 16)
        #expect(try ElfKernel.pvhEntry(inNotes: notes + xen, alignment: 8) == 0x100_0850)
    }

    @Test("the PVH entry is read from an 8-byte or a 4-byte XEN_ELFNOTE_PHYS32_ENTRY", arguments: [8, 4])
    func pvhEntry(descSize: Int) throws {
        let notes = ELFBuilder.otherNotes + ELFBuilder.pvhNote(entry: 0x100_0850, descSize: descSize)
        let elf = try ElfKernel(from: ELFBuilder.kernel(notes: notes).bytes)
        #expect(elf.pvhEntry == 0x100_0850)
    }

    @Test("the PVH note is found when it comes first, and other notes with type 18 are skipped")
    func noteOrder() throws {
        #expect(try ElfKernel.pvhEntry(inNotes: ELFBuilder.pvhNote(entry: 0x100_0000)) == 0x100_0000)
        let gnu18 = ELFBuilder.note(name: "GNU", type: 18, desc: [0, 0, 0, 1])
        let xen = ELFBuilder.note(name: "Xenon", type: 18, desc: [0, 0, 0, 2])
        #expect(try ElfKernel.pvhEntry(inNotes: gnu18 + xen + ELFBuilder.pvhNote(entry: 0x123_4560)) == 0x123_4560)
        #expect(try ElfKernel.pvhEntry(inNotes: gnu18 + xen) == nil)
        #expect(try ElfKernel.pvhEntry(inNotes: []) == nil)
    }

    @Test("a PT_LOAD with no memory size is skipped")
    func emptySegment() throws {
        var file = ELFBuilder.kernel()
        file.programHeaders.insert(PH(offset: 0, physicalAddress: 0), at: 0)
        let elf = try ElfKernel(from: file.bytes)
        #expect(elf.segments.map(\.index) == [1, 2])
    }

    @Test("the ELF magic is recognised")
    func magic() {
        #expect(ElfKernel.hasMagic(ELFBuilder.kernel().bytes))
        #expect(!ElfKernel.hasMagic(SyntheticBzImage().bytes))
        #expect(!ElfKernel.hasMagic([0x7F, 0x45, 0x4C]))
    }

    // MARK: - The header

    @Test("an ELF without the PVH note is refused with advice to use CONFIG_PVH or the bzImage")
    func noPVHNote() {
        let error = parseError(ELFBuilder.kernel(notes: ELFBuilder.otherNotes).bytes)
        #expect(error?.caseName == "unsupported")
        #expect(error?.description.contains("XEN_ELFNOTE_PHYS32_ENTRY") == true)
        #expect(error?.description.contains("CONFIG_PVH") == true)
        #expect(error?.description.contains("bzImage") == true)
    }

    @Test("an ELF without any PT_NOTE is refused for lacking the PVH entry")
    func noNoteSegment() {
        var file = ELFBuilder.kernel()
        file.programHeaders.removeLast()
        #expect(parseError(file.bytes)?.description.contains("no PVH entry point") == true)
    }

    /// One bad header field, what kind of error it gives, and a phrase the message must hold.
    enum BadHeader: CaseIterable, Sendable {
        case class32, bigEndian, identVersion, version, sharedObject, i386, arm

        func apply(_ file: inout ELFBuilder) {
            switch self {
            case .class32: file.elfClass = 1
            case .bigEndian: file.data = 2
            case .identVersion: file.identVersion = 0
            case .version: file.version = 2
            case .sharedObject: file.type = 3
            case .i386: file.machine = 3
            case .arm: file.machine = 40
            }
        }

        var expected: (kind: String, message: String) {
            switch self {
            case .class32: ("unsupported", "ELFCLASS64")
            case .bigEndian: ("unsupported", "little-endian")
            case .identVersion, .version: ("notAKernel", "EV_CURRENT")
            case .sharedObject: ("unsupported", "ET_EXEC")
            case .i386: ("unsupported", "EM_X86_64")
            case .arm: ("unsupported", "machine 40")
            }
        }
    }

    @Test(
        "a wrong class, byte order, version, type or machine is refused, naming what was found and expected",
        arguments: BadHeader.allCases)
    func badHeader(fault: BadHeader) {
        var file = ELFBuilder.kernel()
        fault.apply(&file)
        let error = parseError(file.bytes)
        #expect(error?.caseName == fault.expected.kind)
        #expect(error?.description.contains(fault.expected.message) == true, "\(String(describing: error))")
    }

    @Test("a file shorter than the 64-byte ELF header is refused, giving its size", arguments: [4, 40, 63])
    func truncatedHeader(size: Int) {
        let error = parseError(Array(ELFBuilder.kernel().bytes[..<size]))
        #expect(error?.caseName == "notAKernel")
        #expect(error?.description.contains("only \(size)") == true)
    }

    @Test("a program header entry size other than 56 is refused", arguments: [UInt16(0), 32, 64])
    func programHeaderEntrySize(size: UInt16) {
        var file = ELFBuilder.kernel()
        file.programHeaderEntrySize = size
        let error = parseError(file.bytes)
        #expect(error?.caseName == "notAKernel")
        #expect(error?.description.contains("56") == true)
    }

    @Test("no program headers, PN_XNUM, or more than 256 are refused", arguments: [UInt16(0), 0xFFFF, 257])
    func programHeaderCount(count: UInt16) {
        var file = ELFBuilder.kernel()
        file.programHeaderCount = count
        file.fileSize = 64 * 1024
        #expect(parseError(file.bytes)?.description.contains("program headers") == true)
    }

    @Test(
        "a program header table past the end of the file, or whose end overflows, is refused",
        arguments: [UInt64(0x3800 - 100), 0x10_0000, UInt64.max - 20, UInt64.max])
    func programHeadersPastEOF(offset: UInt64) {
        var file = ELFBuilder.kernel()
        file.programHeaderOffset = offset
        file.fileSize = 0x3800
        let bytes = file.bytes
        #expect(bytes.count == 0x3800)
        let error = parseError(bytes)
        #expect(error?.caseName == "notAKernel")
        #expect(error?.description.contains("program header table") == true)
    }

    // MARK: - Segments

    func withSegment(_ change: (inout PH) -> Void) -> [UInt8] {
        var file = ELFBuilder.kernel()
        change(&file.programHeaders[1])
        return file.bytes
    }

    @Test(
        "a segment whose file bytes lie outside the file, or whose offset + size overflows, is refused",
        arguments: [
            (UInt64(0x3000), UInt64(0x801)), (0x3800, 1), (0x10_0000, 0x10), (UInt64.max - 4, 0x10),
            (0x10, UInt64.max),
        ] as [(UInt64, UInt64)])
    func segmentOutsideFile(offset: UInt64, size: UInt64) {
        let error = parseError(
            withSegment {
                $0.offset = offset
                $0.fileSize = size
                $0.memorySize = UInt64.max
                $0.physicalAddress = 0x10_0000
            })
        #expect(error?.caseName == "notAKernel")
        #expect(error?.description.contains("segment 1") == true)
        #expect(error?.description.contains("past the end") == true)
    }

    @Test("p_filesz larger than p_memsz is refused")
    func fileSizeOverMemorySize() {
        let error = parseError(withSegment { $0.memorySize = 0x7FF })
        #expect(error?.caseName == "notAKernel")
        #expect(error?.description.contains("p_filesz 0x800 is larger than p_memsz 0x7ff") == true)
    }

    @Test("a segment whose address + memory size wraps around is refused")
    func segmentWraps() {
        let error = parseError(withSegment { $0.physicalAddress = UInt64.max - 0x1000 })
        #expect(error?.caseName == "notAKernel")
        #expect(error?.description.contains("wraps") == true)
    }

    @Test("a segment below 1 MiB, over the boot structures, is refused", arguments: [UInt64(0), 0x7000, 0xF_FFFF])
    func segmentInLowMemory(address: UInt64) {
        let error = parseError(withSegment { $0.physicalAddress = address })
        #expect(error?.caseName == "unsupported")
        #expect(error?.description.contains("below 1 MiB") == true)
    }

    @Test("an ELF whose PVH entry is outside every PT_LOAD segment's file bytes is refused")
    func entryOutsideSegments() {
        for entry: UInt64 in [0x10_0000, 0x100_2000, 0x200_0900] {
            let error = parseError(ELFBuilder.kernel(notes: ELFBuilder.pvhNote(entry: entry)).bytes)
            #expect(error?.caseName == "notAKernel")
            #expect(error?.description.contains("not inside") == true)
        }
    }

    // MARK: - Notes

    @Test("an entry at or above 4 GiB is refused")
    func entryAbove4GiB() {
        for entry: UInt64 in [0x1_0000_0000, 0x1_0100_0850, UInt64.max] {
            let error = parseError(ELFBuilder.kernel(notes: ELFBuilder.pvhNote(entry: entry)).bytes)
            #expect(error?.caseName == "unsupported")
            #expect(error?.description.contains("4 GiB") == true)
        }
    }

    @Test("a PVH note whose descriptor is neither 4 nor 8 bytes is refused", arguments: [0, 2, 12])
    func badDescriptorSize(size: Int) {
        let notes = ELFBuilder.note(name: "Xen", type: 18, desc: [UInt8](repeating: 1, count: size))
        let error = loaderError { _ = try ElfKernel.pvhEntry(inNotes: notes) }
        #expect(error?.caseName == "notAKernel")
        #expect(error?.description.contains("\(size) bytes; expected 4 or 8") == true)
    }

    @Test(
        "notes with huge namesz or descsz, or a truncated header, are refused without reading past the segment",
        arguments: [(0xFFFF_FFFF, 4), (4, 0xFFFF_FFFF), (0xFFFF_FFFC, 0xFFFF_FFFC), (5, 8), (4, 9)]
            as [(UInt32, UInt32)])
    func hugeNoteSizes(nameSize: UInt32, descSize: UInt32) {
        var note = ELFBuilder.pvhNote(entry: 0x100_0850)
        note.put(nameSize, at: 0)
        note.put(descSize, at: 4)
        let error = parseError(ELFBuilder.kernel(notes: note).bytes)
        #expect(error?.caseName == "notAKernel")
        #expect(error?.description.contains("runs past the end") == true)
    }

    @Test("a note header cut short by the end of the segment is refused")
    func truncatedNoteHeader() {
        let notes = ELFBuilder.otherNotes + [4, 0, 0, 0, 8, 0]
        let error = parseError(ELFBuilder.kernel(notes: notes).bytes)
        #expect(error?.caseName == "notAKernel")
        #expect(error?.description.contains("truncated") == true)
    }

    @Test("a PT_NOTE segment outside the file, or larger than 1 MiB, is refused")
    func badNoteSegment() {
        var file = ELFBuilder.kernel()
        file.programHeaders[2].offset = UInt64.max - 8
        #expect(parseError(file.bytes)?.description.contains("PT_NOTE") == true)
        file = ELFBuilder.kernel()
        file.programHeaders[2].fileSize = (1 << 20) + 1
        file.fileSize = 2 << 20
        let error = parseError(file.bytes)
        #expect(error?.caseName == "unsupported")
        #expect(error?.description.contains("PT_NOTE") == true)
    }
}
