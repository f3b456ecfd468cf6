import CKVM
import GuestMemory
import Testing

@testable import X86

@Suite("PVH loading of an ELF vmlinux")
struct PVHLoaderTests {
    static let sixtyFourMiB: UInt64 = 64 << 20

    func load(
        _ file: ELFBuilder = .kernel(), initrd: [UInt8]? = nil, commandLine: String = "console=ttyS0",
        e820: [E820Entry]? = nil, memory: GuestMemory
    ) throws -> LinuxLoader.Entry {
        try LinuxLoader().load(
            kernel: file.bytes, initrd: initrd, commandLine: commandLine,
            e820: e820 ?? LinuxLoader.e820Map(for: memory),
            into: memory)
    }

    // MARK: - Segments and entry

    @Test("an ELF takes the PVH path: segments at p_paddr, entry from the note, start info in ebx")
    func goodKernel() throws {
        let memory = try GuestMemory(x86MiB: 64)
        // The bss must come out zero even where guest memory was not.
        try memory.write([UInt8](repeating: 0xEE, count: 0x4000), at: ELFBuilder.dataAddress)
        let entry = try load(memory: memory)
        #expect(entry.boot == .pvh(entry: 0x100_0850, startInfo: 0x6000))
        #expect(entry.kernelStart == 0x100_0000)
        #expect(entry.kernelEnd == 0x200_3000)
        #expect(entry.initrd == nil)
        #expect(try memory.read(at: 0x100_0000, count: ELFBuilder.textSize) == ELFBuilder.text)
        #expect(try memory.read(at: 0x200_0000, count: ELFBuilder.dataFileSize) == ELFBuilder.data)
        let bss = try memory.read(at: 0x200_0800, count: 0x2800)
        #expect(bss.allSatisfy { $0 == 0 })
        // Past p_memsz, memory is left alone.
        #expect(try memory.read(at: 0x200_3000, count: 0x1000).allSatisfy { $0 == 0xEE })
        // Nothing goes to the bzImage places: no zero page, nothing at 2 MiB.
        #expect(try memory.read(at: LinuxLoader.zeroPageAddress, count: 0x1000).allSatisfy { $0 == 0 })
        #expect(try memory.read(at: LinuxLoader.kernelAddress, count: 0x1000).allSatisfy { $0 == 0 })
    }

    @Test("a 4-byte PVH note works the same as an 8-byte one")
    func fourByteNote() throws {
        let memory = try GuestMemory(x86MiB: 64)
        let notes = ELFBuilder.pvhNote(entry: 0x100_1000, descSize: 4)
        let entry = try load(.kernel(notes: notes), memory: memory)
        #expect(entry.boot == .pvh(entry: 0x100_1000, startInfo: 0x6000))
    }

    @Test("a segment beyond guest RAM is refused before anything is written")
    func segmentBeyondRAM() throws {
        let memory = try GuestMemory(x86MiB: 32)
        var file = ELFBuilder.kernel()
        file.programHeaders[1].physicalAddress = (32 << 20) - 0x1000  // the bss runs past the end
        let error = loaderError { _ = try load(file, memory: memory) }
        #expect(error?.caseName == "tooLittleMemory")
        #expect(error?.description.contains("segment 1") == true)
        #expect(error?.description.contains("32 MiB") == true)
        #expect(try memory.read(at: 0x100_0000, count: 16).allSatisfy { $0 == 0 })
        #expect(try memory.read(at: LinuxLoader.pvhStartInfoAddress, count: 16).allSatisfy { $0 == 0 })
    }

    @Test("a segment in the MMIO hole is refused", arguments: [UInt64(0xC000_0000), 0xFEE0_0000])
    func segmentInHole(address: UInt64) throws {
        let memory = try GuestMemory(x86MiB: 64)
        var file = ELFBuilder.kernel()
        file.programHeaders[1].physicalAddress = address
        #expect(loaderError { _ = try load(file, memory: memory) }?.caseName == "tooLittleMemory")
    }

    @Test("parse errors surface unchanged from load")
    func parseErrors() throws {
        let memory = try GuestMemory(x86MiB: 64)
        let error = loaderError { _ = try load(.kernel(notes: ELFBuilder.otherNotes), memory: memory) }
        #expect(error?.caseName == "unsupported")
        #expect(error?.description.contains("XEN_ELFNOTE_PHYS32_ENTRY") == true)
        // A tiny ELF file is parsed as an ELF, not reported as a short bzImage.
        let short = loaderError {
            _ = try LinuxLoader().load(
                kernel: [0x7F, 0x45, 0x4C, 0x46, 2, 1, 1], initrd: nil, commandLine: "", e820: [], into: memory)
        }
        #expect(short?.description.contains("ELF header") == true)
    }

    // MARK: - Start info

    @Test("the start info at 0x6000: magic, version 1, command line, RSDP, memory map, no modules")
    func startInfo() throws {
        let memory = try GuestMemory(x86MiB: 64)
        let map = LinuxLoader.e820Map(for: memory)
        _ = try load(memory: memory)
        let info = try memory.read(at: 0x6000, count: 56)
        #expect(info.loadLE(UInt32.self, at: 0) == 0x336E_C578)  // magic
        #expect(info.loadLE(UInt32.self, at: 4) == 1)  // version
        #expect(info.loadLE(UInt32.self, at: 8) == 0)  // flags
        #expect(info.loadLE(UInt32.self, at: 12) == 0)  // nr_modules
        #expect(info.loadLE(UInt64.self, at: 16) == 0)  // modlist_paddr
        #expect(info.loadLE(UInt64.self, at: 24) == 0x20000)  // cmdline_paddr
        #expect(info.loadLE(UInt64.self, at: 32) == 0xE_0000)  // rsdp_paddr
        #expect(info.loadLE(UInt64.self, at: 40) == 0x6080)  // memmap_paddr
        #expect(info.loadLE(UInt32.self, at: 48) == UInt32(map.count))  // memmap_entries
        #expect(info.loadLE(UInt32.self, at: 52) == 0)  // reserved
        #expect(try memory.read(at: 0x6040, count: 32).allSatisfy { $0 == 0 })  // no module entry
        let commandLine = Array("console=ttyS0".utf8)
        #expect(try memory.read(at: 0x20000, count: commandLine.count + 1) == commandLine + [0])
    }

    @Test("the memory map at 0x6080 has the e820 entries, 24 bytes each, field by field")
    func memoryMap() throws {
        let memory = try GuestMemory(x86MiB: 64)
        let map = LinuxLoader.e820Map(for: memory)
        #expect(map.count == 3)
        _ = try load(memory: memory)
        let table = try memory.read(at: 0x6080, count: 24 * 4)
        for (i, entry) in map.enumerated() {
            let offset = 24 * i
            #expect(table.loadLE(UInt64.self, at: offset) == entry.address)  // addr
            #expect(table.loadLE(UInt64.self, at: offset + 8) == entry.size)  // size
            #expect(table.loadLE(UInt32.self, at: offset + 16) == entry.kind.rawValue)  // type
            #expect(table.loadLE(UInt32.self, at: offset + 20) == 0)  // reserved
        }
        #expect(table.loadLE(UInt64.self, at: 0) == 0)
        #expect(table.loadLE(UInt64.self, at: 8) == 0x9_FC00)
        #expect(table.loadLE(UInt32.self, at: 24 + 16) == 2)  // the MP table's KiB is reserved
        #expect(table.loadLE(UInt64.self, at: 48) == 0x10_0000)
        #expect(table.loadLE(UInt64.self, at: 56) == (64 << 20) - 0x10_0000)
        #expect(table[72...].allSatisfy { $0 == 0 })  // nothing after the last entry
    }

    @Test("128 e820 entries fit below the zero page; 129 or none are refused")
    func memoryMapLimits() throws {
        let memory = try GuestMemory(x86MiB: 64)
        let full = (0..<128).map { E820Entry(address: 0x10_0000 + UInt64($0) << 12, size: 0x1000, kind: .ram) }
        _ = try load(e820: full, memory: memory)
        #expect(try memory.load(UInt32.self, at: 0x6000 + 48) == 128)
        #expect(LinuxLoader.pvhMemoryMapAddress + 128 * 24 <= LinuxLoader.zeroPageAddress)
        let last = try memory.read(at: 0x6080 + 127 * 24, count: 24)
        #expect(last.loadLE(UInt64.self, at: 0) == 0x10_0000 + 127 << 12)
        let tooMany = loaderError { _ = try load(e820: full + full.prefix(1), memory: memory) }
        #expect(tooMany?.description.contains("129 e820 entries") == true)
        let none = loaderError { _ = try load(e820: [], memory: memory) }
        #expect(none?.caseName == "unsupported")
        #expect(none?.description.contains("memory map") == true)
    }

    @Test("the initrd is module 0: page-aligned at the top of low RAM, with its address and size")
    func initrdModule() throws {
        let memory = try GuestMemory(x86MiB: 64)
        let initrd = (0..<5000).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 1) }
        let entry = try load(initrd: initrd, memory: memory)
        let expected: UInt64 = (64 << 20) - 0x2000  // (64 MiB - 5000) rounded down to a page
        let placed = try #require(entry.initrd)
        #expect(placed.address == expected && placed.size == 5000)
        #expect(try memory.read(at: expected, count: initrd.count) == initrd)
        let info = try memory.read(at: 0x6000, count: 56)
        #expect(info.loadLE(UInt32.self, at: 12) == 1)  // nr_modules
        #expect(info.loadLE(UInt64.self, at: 16) == 0x6040)  // modlist_paddr
        let module = try memory.read(at: 0x6040, count: 32)
        #expect(module.loadLE(UInt64.self, at: 0) == expected)  // paddr
        #expect(module.loadLE(UInt64.self, at: 8) == 5000)  // size
        #expect(module.loadLE(UInt64.self, at: 16) == 0)  // cmdline_paddr
        #expect(module.loadLE(UInt64.self, at: 24) == 0)  // reserved
    }

    @Test("an empty initrd is no module")
    func emptyInitrd() throws {
        let memory = try GuestMemory(x86MiB: 64)
        let entry = try load(initrd: [], memory: memory)
        #expect(entry.initrd == nil)
        #expect(try memory.load(UInt32.self, at: 0x6000 + 12) == 0)
    }

    @Test("the initrd goes above the kernel's last segment, and one that does not fit is refused first")
    func initrdAboveKernel() throws {
        let memory = try GuestMemory(x86MiB: 64)
        // The kernel ends at 0x2003000: 64 MiB - that leaves 0x1FFD000 bytes.
        let fits = try load(initrd: [UInt8](repeating: 1, count: 0x1FFD000), memory: memory)
        #expect(fits.initrd?.address == 0x200_3000)
        let fresh = try GuestMemory(x86MiB: 64)
        let error = loaderError { _ = try load(initrd: [UInt8](repeating: 1, count: 0x1FFD001), memory: fresh) }
        #expect(error?.caseName == "tooLittleMemory")
        #expect(error?.description.contains("initrd") == true)
        #expect(try fresh.read(at: 0x100_0000, count: 16).allSatisfy { $0 == 0 })
    }

    @Test("with more than 2 GiB of low RAM the initrd stays below 2 GiB")
    func initrdBelow2GiB() throws {
        let memory = try GuestMemory(x86MiB: 3 << 10)
        let entry = try load(initrd: [1, 2, 3], memory: memory)
        #expect(entry.initrd?.address == 0x8000_0000 - 0x1000)
    }

    // MARK: - Command line

    @Test("a command line of 2047 bytes is accepted; 2048 is refused, giving both lengths")
    func commandLineLimit() throws {
        let memory = try GuestMemory(x86MiB: 64)
        _ = try load(commandLine: String(repeating: "x", count: 2047), memory: memory)
        #expect(try memory.read(at: 0x20000 + 2047, count: 1) == [0])
        let error = loaderError { _ = try load(commandLine: String(repeating: "x", count: 2048), memory: memory) }
        #expect(error?.caseName == "commandLine")
        #expect(error?.description.contains("2048") == true)
        #expect(error?.description.contains("2047") == true)
    }

    @Test("a command line containing a NUL byte is refused before anything is written")
    func commandLineNUL() throws {
        let memory = try GuestMemory(x86MiB: 64)
        let error = loaderError { _ = try load(commandLine: "console=ttyS0\0init=/bin/sh", memory: memory) }
        #expect(error?.caseName == "commandLine")
        #expect(error?.description.contains("NUL") == true)
        #expect(try memory.read(at: 0x100_0000, count: 16).allSatisfy { $0 == 0 })
    }

    // MARK: - Layout

    @Test("the PVH structures stay clear of the GDT, the zero page, the page tables and the command line")
    func layout() {
        let startInfoEnd = LinuxLoader.pvhStartInfoAddress + UInt64(PVHStartInfo.size)
        #expect(LinuxLoader.pvhStartInfoAddress >= LongModeLayout.idtAddress + 8)
        #expect(startInfoEnd <= LinuxLoader.pvhModuleListAddress)
        #expect(LinuxLoader.pvhModuleListAddress + UInt64(PVHModule.size) <= LinuxLoader.pvhMemoryMapAddress)
        let mapEnd = LinuxLoader.pvhMemoryMapAddress + UInt64(BootParams.e820MaxEntries * PVHMemoryMapEntry.size)
        #expect(mapEnd <= LinuxLoader.zeroPageAddress)
    }

    @Test("the structures encode to their C sizes")
    func structureSizes() {
        #expect(PVHStartInfo().bytes.count == 56)
        #expect(PVHModule(address: 1, size: 2).bytes.count == 32)
        #expect(PVHMemoryMapEntry(E820Entry(address: 1, size: 2, kind: .reserved)).bytes.count == 24)
    }
}

@Suite("32-bit protected mode for PVH entry")
struct ProtectedModeTests {
    @Test("the 32-bit code descriptor is flat, 32-bit, not long mode")
    func code32() {
        #expect(SegmentDescriptor.code32.encoded == 0x00CF_9B00_0000_FFFF)
        let cs = SegmentDescriptor.code32.segment(selector: 8)
        #expect(cs.l == 0 && cs.db == 1 && cs.present == 1 && cs.type == 0xB && cs.s == 1 && cs.g == 1)
        #expect(cs.base == 0 && cs.limit == 0xFFFF_FFFF)
    }

    @Test("the GDT holds null, 32-bit code, data and a busy TSS at the long-mode selectors")
    func gdt() throws {
        let memory = try GuestMemory(ranges: [(0, 1 << 20)])
        try memory.write([UInt8](repeating: 0xFF, count: 0x40), at: LongModeLayout.gdtAddress)
        try ProtectedMode.writeTables(into: memory)
        let base = LongModeLayout.gdtAddress
        #expect(try memory.load(UInt64.self, at: base) == 0)
        #expect(try memory.load(UInt64.self, at: base + UInt64(LongModeLayout.codeSelector)) == 0x00CF_9B00_0000_FFFF)
        #expect(try memory.load(UInt64.self, at: base + UInt64(LongModeLayout.dataSelector)) == 0x00CF_9300_0000_FFFF)
        #expect(try memory.load(UInt64.self, at: base + UInt64(LongModeLayout.tssSelector)) == 0x008F_8B00_0000_FFFF)
        #expect(try memory.load(UInt64.self, at: LongModeLayout.idtAddress) == 0)
        // No page tables.
        #expect(try memory.load(UInt64.self, at: LongModeLayout.pml4Address) == 0)
    }

    @Test("special registers: PE and ET only, no paging, PAE or EFER bits, flat segments, TR from the TSS")
    func specialRegisters() {
        var sregs = kvm_sregs()
        // As if the vCPU had been in long mode before.
        sregs.cr0 = 0x8000_0033
        sregs.cr3 = 0x9000
        sregs.cr4 = 0x20
        sregs.efer = 0x500
        ProtectedMode.configure(&sregs)
        #expect(sregs.cr0 == X86Bits.cr0PE | X86Bits.cr0ET)
        #expect(sregs.cr3 == 0 && sregs.cr4 == 0 && sregs.efer == 0)
        #expect(sregs.gdt.base == 0x500 && sregs.gdt.limit == 31)
        #expect(sregs.idt.base == 0x520 && sregs.idt.limit == 7)
        #expect(sregs.cs.selector == 0x08 && sregs.cs.db == 1 && sregs.cs.l == 0 && sregs.cs.type == 0xB)
        for segment in [sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss] {
            #expect(segment.selector == 0x10 && segment.type == 0x3 && segment.db == 1 && segment.limit == 0xFFFF_FFFF)
            #expect(segment.base == 0 && segment.present == 1 && segment.unusable == 0)
        }
        #expect(sregs.tr.selector == 0x18 && sregs.tr.type == 0xB && sregs.tr.present == 1 && sregs.tr.s == 0)
    }
}
