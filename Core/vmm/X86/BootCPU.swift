import GuestMemory
import KVM

/// Starts the bootstrap processor the way a loaded kernel expects (see
/// ``LinuxLoader/Entry/BootState``); the other vCPUs wait for INIT/SIPI from it.
public enum BootCPU {
    /// Writes the boot tables `entry` needs into `memory` and puts `vcpu` in its start state:
    /// 64-bit long mode at the bzImage's entry with the zero page in `rsi` and the stack at
    /// ``LinuxLoader/bootStack``, or 32-bit protected mode at the PVH entry with the start info in `ebx`.
    public static func start(_ vcpu: VCPU, memory: GuestMemory, entry: LinuxLoader.Entry) throws {
        switch entry.boot {
        case .longMode(let rip, let zeroPage):
            try LongMode.start(vcpu, memory: memory, entry: rip, stack: LinuxLoader.bootStack, rsi: zeroPage)
        case .pvh(let pvhEntry, let startInfo):
            try ProtectedMode.start(vcpu, memory: memory, entry: pvhEntry, ebx: startInfo)
        }
    }
}
