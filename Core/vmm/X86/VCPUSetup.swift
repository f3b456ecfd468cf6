import CKVM
import KVM

/// Per-vCPU reset state for a Linux guest: CPUID with this vCPU's topology, boot MSRs, FPU, and
/// the local APIC's LINT pins.
public enum VCPUSetup {
    /// Leaf 1 ECX: running under a hypervisor.
    static let hypervisorBit: UInt32 = 1 << 31
    /// Leaf 1 EDX: hyper-threading (more than one logical processor per package).
    static let httBit: UInt32 = 1 << 28
    /// Leaf 1 ECX: the local APIC's TSC-deadline timer mode. KVM emulates it but does not report
    /// it in KVM_GET_SUPPORTED_CPUID; the VMM turns it on (KVM_CAP_TSC_DEADLINE_TIMER).
    static let tscDeadlineBit: UInt32 = 1 << 24

    /// `supported` (from `KVM_GET_SUPPORTED_CPUID`) adjusted for vCPU `id` of `count`; with
    /// `tscDeadlineTimer`, the guest may arm its APIC timer by TSC deadline (one MSR write per
    /// timer event instead of the one-shot count, as Firecracker and crosvm offer it).
    public static func cpuid(
        _ supported: [CPUIDEntry], id: UInt32, count: UInt32, tscDeadlineTimer: Bool = false
    ) -> [CPUIDEntry] {
        let count = max(count, 1)
        let shift = UInt32(32 - (count - 1).leadingZeroBitCount)
        return supported.map { leaf in
            var leaf = leaf
            switch leaf.function {
            case 1:
                leaf.ebx = (leaf.ebx & 0x0000_FFFF) | (id << 24) | (min(count, 255) << 16)
                leaf.ecx |= hypervisorBit
                if tscDeadlineTimer { leaf.ecx |= tscDeadlineBit }
                if count > 1 { leaf.edx |= httBit } else { leaf.edx &= ~httBit }
            case 0xB, 0x1F:
                // Extended topology: one thread per core, `count` cores in one package.
                switch leaf.index {
                case 0: (leaf.eax, leaf.ebx, leaf.ecx) = (0, 1, 0x100)
                case 1: (leaf.eax, leaf.ebx, leaf.ecx) = (shift, count, 0x201)
                default: (leaf.eax, leaf.ebx, leaf.ecx) = (0, 0, leaf.index)
                }
                leaf.edx = id
            case 0xA:
                // No virtual PMU: the guest must not program counters that do nothing.
                (leaf.eax, leaf.ebx, leaf.ecx, leaf.edx) = (0, 0, 0, 0)
            case 0x8000_0008:
                leaf.ecx = (leaf.ecx & ~0xF0FF) | (shift << 12) | (count - 1)
            case 0x8000_001E:
                leaf.eax = id
                leaf.ebx = (leaf.ebx & ~0xFF) | (id & 0xFF)
            default:
                break
            }
            return leaf
        }
    }

    /// MSRs a Linux guest expects at reset (as Firecracker and crosvm set them).
    public static let bootMSRs: [(index: UInt32, value: UInt64)] = [
        (0x174, 0), (0x175, 0), (0x176, 0),  // SYSENTER_CS/ESP/EIP
        (0xC000_0081, 0), (0xC000_0082, 0), (0xC000_0083, 0), (0xC000_0084, 0),  // STAR, LSTAR, CSTAR, SFMASK
        (0xC000_0102, 0),  // KERNEL_GS_BASE
        (0x10, 0),  // TSC
        (0x1A0, 1),  // MISC_ENABLE: fast strings
        (0x2FF, (1 << 11) | 6),  // MTRR default type: enabled, write-back
    ]

    /// Applies CPUID, MSRs, FPU and LAPIC state to `vcpu`.
    public static func configure(
        _ vcpu: VCPU, supportedCPUID: [CPUIDEntry], count: UInt32, tscDeadlineTimer: Bool = false
    ) throws(KVMError) {
        try vcpu.setCPUID(cpuid(supportedCPUID, id: vcpu.id, count: count, tscDeadlineTimer: tscDeadlineTimer))
        try vcpu.setMSRs(bootMSRs)
        var fpu = kvm_fpu()
        fpu.fcw = 0x37F
        fpu.mxcsr = 0x1F80
        try vcpu.setFPU(fpu)
        try vcpu.modifyLocalAPIC { regs in
            // LVT LINT0 = ExtINT (the PIC), LINT1 = NMI; delivery mode is bits 8..10.
            setDeliveryMode(&regs, offset: 0x350, mode: 7)
            setDeliveryMode(&regs, offset: 0x360, mode: 4)
        }
    }

    static func setDeliveryMode(_ regs: inout [UInt8], offset: Int, mode: UInt32) {
        var value =
            UInt32(regs[offset]) | UInt32(regs[offset + 1]) << 8 | UInt32(regs[offset + 2]) << 16 | UInt32(
                regs[offset + 3]) << 24
        value = (value & ~0x700) | (mode << 8)
        for i in 0..<4 { regs[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * i)) }
    }
}
