import CKVM
import GuestMemory
import KVM

extension SegmentDescriptor {
    /// 32-bit code, execute/read, present, ring 0, 4 GiB (default operand size 32, not long mode).
    public static let code32 = SegmentDescriptor(flags: 0xC09B, base: 0, limit: 0xFFFFF)
}

/// Sets up guest memory and vCPU state for the PVH boot ABI: the vCPU starts in 32-bit protected
/// mode with paging off, flat 4 GiB code and data segments, a busy TSS in TR, and the start info
/// address in `ebx` (Xen's docs/misc/pvh.pandoc).
///
/// The GDT lies where the long-mode one does (``LongModeLayout/gdtAddress``), with the same
/// selectors; no page tables are written.
public enum ProtectedMode {
    /// The GDT: null, 32-bit code, data, TSS.
    static let gdt: [SegmentDescriptor?] = [nil, .code32, .data, .tss]

    /// Writes the GDT and an empty IDT into guest memory.
    public static func writeTables(into memory: GuestMemory) throws(GuestMemoryError) {
        for (i, descriptor) in gdt.enumerated() {
            try memory.store(descriptor?.encoded ?? 0, at: LongModeLayout.gdtAddress + UInt64(i * 8))
        }
        try memory.store(UInt64(0), at: LongModeLayout.idtAddress)
    }

    /// Puts `sregs` into 32-bit protected mode with the tables from ``writeTables(into:)``:
    /// CR0 = PE | ET, CR3 = CR4 = EFER = 0.
    public static func configure(_ sregs: inout kvm_sregs) {
        LongMode.loadBootSegments(&sregs, code: .code32, entries: gdt.count)
        sregs.cr0 = X86Bits.cr0PE | X86Bits.cr0ET
        sregs.cr3 = 0
        sregs.cr4 = 0
        sregs.efer = 0
    }

    /// Writes the tables and puts `vcpu` in 32-bit protected mode at `entry` with `ebx` (the PVH
    /// ABI passes the start info's address there) and RFLAGS = 2; the other registers are zero.
    public static func start(_ vcpu: VCPU, memory: GuestMemory, entry: UInt32, ebx: UInt32) throws {
        try writeTables(into: memory)
        var sregs = try vcpu.specialRegisters()
        configure(&sregs)
        try vcpu.setSpecialRegisters(sregs)
        var regs = kvm_regs()
        regs.rflags = 0x2  // bit 1 is reserved and must be set
        regs.rip = UInt64(entry)
        regs.rbx = UInt64(ebx)
        try vcpu.setRegisters(regs)
    }
}
