import CKVM

// MARK: - State report

extension VCPU {
    /// One line of the registers that tell where a guest was when it died (a triple fault, an
    /// internal error): instruction and stack pointers, flags, control registers (CR2 is the
    /// last page-fault address), EFER, the code and stack selectors, and the descriptor tables.
    public func stateReport() -> String {
        guard let regs = try? registers(), let sregs = try? specialRegisters() else {
            return "vCPU \(id): registers unreadable"
        }
        // AMD's KVM resets the vCPU on a shutdown intercept (the VMCB is undefined after it):
        // what is left is the reset state, which says nothing about the crash.
        if regs.rip == 0xFFF0 && sregs.cs.selector == 0xF000 {
            return "registers not available (KVM reset the vCPU, as it does on AMD after a triple fault)"
        }
        func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }
        return [
            "rip=\(hex(regs.rip))", "rsp=\(hex(regs.rsp))", "rbp=\(hex(regs.rbp))", "rflags=\(hex(regs.rflags))",
            "rax=\(hex(regs.rax))", "cr0=\(hex(sregs.cr0))", "cr2=\(hex(sregs.cr2))", "cr3=\(hex(sregs.cr3))",
            "cr4=\(hex(sregs.cr4))", "efer=\(hex(sregs.efer))", "cs=\(hex(UInt64(sregs.cs.selector)))",
            "ss=\(hex(UInt64(sregs.ss.selector)))", "cpl=\(sregs.cs.dpl)",
            "idt=\(hex(sregs.idt.base))/\(sregs.idt.limit)", "gdt=\(hex(sregs.gdt.base))/\(sregs.gdt.limit)",
            "tr=\(hex(sregs.tr.base))",
        ].joined(separator: " ")
    }
}
