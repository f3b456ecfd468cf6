import CKVM
import GuestMemory
import KVM

/// Where the VMM puts the structures that let a vCPU start directly in 64-bit long mode, as the
/// Linux 64-bit boot protocol and PVH-less direct boots expect. All below 1 MiB, out of the way of
/// the kernel (loaded at 1 MiB or higher) and of the zero page.
public enum LongModeLayout {
    /// The GDT: null, 64-bit code, data, TSS.
    public static let gdtAddress: UInt64 = 0x500
    /// An empty IDT (the guest installs its own before enabling interrupts).
    public static let idtAddress: UInt64 = 0x520
    /// Top-level page table (PML4).
    public static let pml4Address: UInt64 = 0x9000
    /// The single PDPT under the PML4.
    public static let pdptAddress: UInt64 = 0xA000
    /// Four page directories of 2 MiB pages: the identity map covers the first 4 GiB.
    public static let pdAddress: UInt64 = 0xB000
    /// Bytes identity-mapped by the boot page tables.
    public static let identityMappedBytes: UInt64 = 4 << 30

    /// GDT selectors.
    public static let codeSelector: UInt16 = 0x08
    public static let dataSelector: UInt16 = 0x10
    public static let tssSelector: UInt16 = 0x18
}

/// x86 control-register and EFER bits used at boot.
public enum X86Bits {
    public static let cr0PE: UInt64 = 1 << 0
    public static let cr0ET: UInt64 = 1 << 4
    public static let cr0PG: UInt64 = 1 << 31
    public static let cr4PAE: UInt64 = 1 << 5
    public static let eferLME: UInt64 = 1 << 8
    public static let eferLMA: UInt64 = 1 << 10
}

/// A segment descriptor, encoded the way the GDT stores it and decoded the way `kvm_sregs` wants it.
public struct SegmentDescriptor: Sendable, Equatable {
    public var base: UInt32
    public var limit: UInt32
    /// Access byte and flags: `flags << 12 | access` (Intel SDM vol. 3, 3.4.5).
    public var flags: UInt16

    public init(flags: UInt16, base: UInt32, limit: UInt32) {
        self.flags = flags
        self.base = base
        self.limit = limit
    }

    /// The 8-byte GDT entry.
    public var encoded: UInt64 {
        var value = UInt64(limit & 0xFFFF)
        value |= UInt64(base & 0xFF_FFFF) << 16
        value |= UInt64(flags & 0xF0FF) << 40
        value |= UInt64((limit >> 16) & 0xF) << 48
        value |= UInt64(base >> 24) << 56
        return value
    }

    /// The segment register loaded with this descriptor through `selector`.
    public func segment(selector: UInt16) -> kvm_segment {
        let granular = (flags >> 15) & 1 == 1
        var segment = kvm_segment()
        segment.base = UInt64(base)
        segment.limit = granular ? (limit << 12) | 0xFFF : limit
        segment.selector = selector
        segment.type = UInt8(flags & 0xF)
        segment.present = UInt8((flags >> 7) & 1)
        segment.dpl = UInt8((flags >> 5) & 3)
        segment.db = UInt8((flags >> 14) & 1)
        segment.s = UInt8((flags >> 4) & 1)
        segment.l = UInt8((flags >> 13) & 1)
        segment.g = granular ? 1 : 0
        segment.avl = UInt8((flags >> 12) & 1)
        segment.unusable = segment.present == 0 ? 1 : 0
        return segment
    }

    /// 64-bit code, execute/read, present, ring 0.
    public static let code64 = SegmentDescriptor(flags: 0xA09B, base: 0, limit: 0xFFFFF)
    /// Data, read/write, present, ring 0, 4 GiB.
    public static let data = SegmentDescriptor(flags: 0xC093, base: 0, limit: 0xFFFFF)
    /// A 32-bit busy TSS (required by VMX for a valid TR; unused by Linux at entry).
    public static let tss = SegmentDescriptor(flags: 0x808B, base: 0, limit: 0xFFFFF)
}

/// Sets up guest memory and vCPU state so that the vCPU starts in 64-bit long mode with paging
/// on and the first 4 GiB identity-mapped.
public enum LongMode {
    /// Writes the GDT, IDT and identity-mapping page tables into guest memory.
    public static func writeTables(into memory: GuestMemory) throws(GuestMemoryError) {
        let gdt: [SegmentDescriptor?] = [nil, .code64, .data, .tss]
        for (i, descriptor) in gdt.enumerated() {
            try memory.store(descriptor?.encoded ?? 0, at: LongModeLayout.gdtAddress + UInt64(i * 8))
        }
        try memory.store(UInt64(0), at: LongModeLayout.idtAddress)

        let present: UInt64 = 1
        let writable: UInt64 = 2
        let hugePage: UInt64 = 1 << 7
        try memory.store(LongModeLayout.pdptAddress | present | writable, at: LongModeLayout.pml4Address)
        let directories = LongModeLayout.identityMappedBytes >> 30
        for gib in 0..<directories {
            let directory = LongModeLayout.pdAddress + gib * 0x1000
            try memory.store(directory | present | writable, at: LongModeLayout.pdptAddress + gib * 8)
            for entry in 0..<UInt64(512) {
                let physical = (gib << 30) | (entry << 21)
                try memory.store(physical | present | writable | hugePage, at: directory + entry * 8)
            }
        }
    }

    /// Points `sregs` at the boot GDT (`entries` descriptors) and empty IDT, and loads CS with
    /// `code`, the data segments with the flat data descriptor and TR with the TSS: the part of
    /// the entry state long mode and PVH's protected mode share.
    static func loadBootSegments(_ sregs: inout kvm_sregs, code: SegmentDescriptor, entries: Int) {
        sregs.gdt.base = LongModeLayout.gdtAddress
        sregs.gdt.limit = UInt16(entries * 8 - 1)
        sregs.idt.base = LongModeLayout.idtAddress
        sregs.idt.limit = 7
        let data = SegmentDescriptor.data.segment(selector: LongModeLayout.dataSelector)
        sregs.cs = code.segment(selector: LongModeLayout.codeSelector)
        sregs.ds = data
        sregs.es = data
        sregs.fs = data
        sregs.gs = data
        sregs.ss = data
        sregs.tr = SegmentDescriptor.tss.segment(selector: LongModeLayout.tssSelector)
    }

    /// Puts `sregs` into long mode with the tables from ``writeTables(into:)``.
    public static func configure(_ sregs: inout kvm_sregs) {
        loadBootSegments(&sregs, code: .code64, entries: 4)
        sregs.cr3 = LongModeLayout.pml4Address
        sregs.cr4 |= X86Bits.cr4PAE
        sregs.cr0 |= X86Bits.cr0PE | X86Bits.cr0PG | X86Bits.cr0ET
        sregs.efer |= X86Bits.eferLME | X86Bits.eferLMA
    }

    /// Writes the tables and puts `vcpu` in long mode at `entry` with stack `stack` and `rsi`
    /// (the Linux boot protocol passes the zero page there).
    public static func start(_ vcpu: VCPU, memory: GuestMemory, entry: UInt64, stack: UInt64, rsi: UInt64 = 0) throws {
        try writeTables(into: memory)
        var sregs = try vcpu.specialRegisters()
        configure(&sregs)
        try vcpu.setSpecialRegisters(sregs)
        var regs = kvm_regs()
        regs.rflags = 0x2  // bit 1 is reserved and must be set
        regs.rip = entry
        regs.rsp = stack
        regs.rbp = stack
        regs.rsi = rsi
        try vcpu.setRegisters(regs)
    }
}
