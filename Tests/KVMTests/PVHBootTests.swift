import CKVM
import GuestMemory
import Testing

@testable import X86

/// A tiny vmlinux: one PT_LOAD holding `code` at 16 MiB (linked, like Linux, in the high virtual
/// mapping), with a bss tail, and a PT_NOTE whose XEN_ELFNOTE_PHYS32_ENTRY names `entryOffset`
/// bytes into the segment.
enum TinyVmlinux {
    static let loadAddress: UInt64 = 0x100_0000
    static let codeOffset = 0x100
    static let memorySize: UInt64 = 0x2000

    static func build(code: [UInt8], entryOffset: Int) -> [UInt8] {
        var file = [UInt8](repeating: 0, count: codeOffset + code.count)
        func put<T: FixedWidthInteger>(_ value: T, at offset: Int) {
            for i in 0..<MemoryLayout<T>.size { file[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * i)) }
        }
        // ELF header: ELFCLASS64, little-endian, EV_CURRENT; ET_EXEC, EM_X86_64; two program headers at 64.
        file.replaceSubrange(0..<7, with: [0x7F, 0x45, 0x4C, 0x46, 2, 1, 1])
        put(UInt16(2), at: 16)
        put(UInt16(62), at: 18)
        put(UInt32(1), at: 20)
        put(loadAddress, at: 24)  // e_entry: not where PVH starts
        put(UInt64(64), at: 32)
        put(UInt16(64), at: 52)
        put(UInt16(56), at: 54)
        put(UInt16(2), at: 56)
        // PT_LOAD: the code at 16 MiB, zero-filled up to memorySize.
        put(UInt32(1), at: 64)
        put(UInt32(5), at: 68)
        put(UInt64(codeOffset), at: 72)
        put(UInt64(0xFFFF_FFFF_8100_0000), at: 80)  // p_vaddr
        put(loadAddress, at: 88)  // p_paddr
        put(UInt64(code.count), at: 96)
        put(memorySize, at: 104)
        // PT_NOTE at 0xB0: "Xen", type 18, 8-byte descriptor.
        let noteOffset = 0xB0
        put(UInt32(4), at: 120)
        put(UInt64(noteOffset), at: 128)
        put(UInt64(24), at: 152)
        put(UInt64(24), at: 160)
        put(UInt64(4), at: 168)
        put(UInt32(4), at: noteOffset)
        put(UInt32(8), at: noteOffset + 4)
        put(UInt32(18), at: noteOffset + 8)
        file.replaceSubrange((noteOffset + 12)..<(noteOffset + 16), with: Array("Xen\0".utf8))
        put(loadAddress + UInt64(entryOffset), at: noteOffset + 16)
        file.replaceSubrange(codeOffset..<(codeOffset + code.count), with: code)
        return file
    }
}

@Suite("PVH boot on KVM", .serialized)
struct PVHBootTests {
    /// Eight `int3` (a start at the segment's first byte or at e_entry would fault), then 32-bit
    /// code that writes what it finds to port 0x3F0 and halts.
    static let code: [UInt8] =
        [UInt8](repeating: 0xCC, count: 8) + [
            0x8B, 0x03,  // mov eax,[ebx]            start_info.magic
            0xBA, 0xF0, 0x03, 0x00, 0x00,  // mov edx,0x3f0
            0xEF,  // out dx,eax
            0x8B, 0x43, 0x18,  // mov eax,[ebx+24]         cmdline_paddr
            0xEF,  // out dx,eax
            0x8B, 0x43, 0x30,  // mov eax,[ebx+48]         memmap_entries
            0xEF,  // out dx,eax
            0x8B, 0x43, 0x10,  // mov eax,[ebx+16]         modlist_paddr
            0x8B, 0x40, 0x08,  // mov eax,[eax+8]          modlist[0].size
            0xEF,  // out dx,eax
            0x0F, 0x20, 0xC0,  // mov eax,cr0
            0xEF,  // out dx,eax
            0x8C, 0xC8,  // mov eax,cs
            0xEF,  // out dx,eax
            0xA1, 0x00, 0x10, 0x00, 0x01,  // mov eax,[0x1001000]      a bss dword
            0xEF,  // out dx,eax
            0x89, 0xD8,  // mov eax,ebx
            0xEF,  // out dx,eax
            0xF4,  // hlt
        ]

    @Test("an ELF kernel loaded by LinuxLoader starts in 32-bit protected mode with the start info in ebx")
    func pvhEntry() throws {
        let memory = try GuestMemory(x86MiB: 64)
        // The bss must come out zero even where guest memory was not.
        try memory.write([UInt8](repeating: 0xEE, count: 0x1000), at: TinyVmlinux.loadAddress + 0x1000)
        let map = LinuxLoader.e820Map(for: memory)
        let entry = try LinuxLoader().load(
            kernel: TinyVmlinux.build(code: Self.code, entryOffset: 8),
            initrd: [UInt8](repeating: 0x5A, count: 3000), commandLine: "console=ttyS0", e820: map, into: memory)
        #expect(entry.boot == .pvh(entry: 0x100_0008, startInfo: 0x6000))

        let guest = try TinyGuest(memory: memory) { vcpu in
            try BootCPU.start(vcpu, memory: memory, entry: entry)
        }
        let sregs = try guest.vcpu.specialRegisters()
        #expect(sregs.cr0 & X86Bits.cr0PG == 0 && sregs.cr0 & X86Bits.cr0PE != 0)
        #expect(sregs.efer == 0 && sregs.cr4 == 0)
        #expect(sregs.cs.db == 1 && sregs.cs.l == 0 && sregs.cs.selector == LongModeLayout.codeSelector)
        #expect(sregs.tr.selector == LongModeLayout.tssSelector && sregs.tr.type == 0xB)
        let regs = try guest.vcpu.registers()
        #expect(regs.rip == 0x100_0008 && regs.rbx == 0x6000 && regs.rflags == 2)

        let device = EchoDevice(answer: 0)
        try guest.pio.insert(device, base: 0x3F0, length: 1)
        let exits = try guest.runToHalt()
        #expect(exits.pio == 8)
        let writes = device.writes.withLock { $0 }
        #expect(writes.allSatisfy { $0.size == 4 && $0.offset == 0 })
        #expect(
            writes.map(\.value) == [
                0x336E_C578,  // XEN_HVM_START_MAGIC_VALUE
                0x20000,  // the command line
                UInt64(map.count),  // memory map entries
                3000,  // the initrd's size, through the module list
                X86Bits.cr0PE | X86Bits.cr0ET,  // protected mode, paging off
                UInt64(LongModeLayout.codeSelector),
                0,  // bss zero-filled
                0x6000,  // ebx
            ])
    }

    @Test("a bzImage entry still starts in long mode through BootCPU")
    func longModeEntry() throws {
        let memory = try GuestMemory(ranges: [(0, 2 << 20)])
        try memory.write([0xF4], at: TinyGuest.entry)  // hlt
        let entry = LinuxLoader.Entry(
            boot: .longMode(rip: TinyGuest.entry, zeroPage: LinuxLoader.zeroPageAddress), kernelStart: 0,
            kernelEnd: 0, initrd: nil)
        let guest = try TinyGuest(memory: memory) { vcpu in
            try BootCPU.start(vcpu, memory: memory, entry: entry)
        }
        let sregs = try guest.vcpu.specialRegisters()
        #expect(sregs.cs.l == 1 && sregs.efer & X86Bits.eferLMA != 0)
        let regs = try guest.vcpu.registers()
        #expect(regs.rsi == LinuxLoader.zeroPageAddress && regs.rsp == LinuxLoader.bootStack)
        try guest.runToHalt()
    }
}
