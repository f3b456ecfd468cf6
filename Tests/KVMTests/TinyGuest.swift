import CKVM
import Devices
import GuestMemory
import KVM
import X86

/// A minimal machine for tests: 2 MiB of RAM (or the caller's memory), one vCPU, and PIO/MMIO
/// buses. Code is loaded at 0x1000 and run until `hlt`; every exit goes through the buses like
/// the real VMM's.
final class TinyGuest {
    let kvm: KVMSystem
    let vm: VirtualMachine
    let memory: GuestMemory
    let vcpu: VCPU
    let pio = IOBus(name: "pio")
    let mmio = IOBus(name: "mmio")
    static let entry: UInt64 = 0x1000

    /// A guest over `memory`, every region registered with KVM; `start` puts the vCPU in its
    /// initial state.
    init(memory: GuestMemory, start: (VCPU) throws -> Void) throws {
        kvm = try KVMSystem()
        vm = try kvm.createVM()
        self.memory = memory
        for (slot, region) in memory.regions.enumerated() {
            try vm.setUserMemoryRegion(
                slot: UInt32(slot), guestAddress: region.guestAddress, size: region.size,
                hostAddress: region.hostAddress)
        }
        vcpu = try vm.createVCPU(id: 0)
        try start(vcpu)
    }

    /// 2 MiB of RAM with `code` at ``entry``, started in real or long mode.
    convenience init(code: [UInt8], longMode: Bool) throws {
        let memory = try GuestMemory(ranges: [(0, 2 << 20)])
        try memory.write(code, at: Self.entry)
        try self.init(memory: memory) { vcpu in
            if longMode {
                try LongMode.start(vcpu, memory: memory, entry: Self.entry, stack: 0x8000)
            } else {
                var sregs = try vcpu.specialRegisters()
                sregs.cs.base = 0
                sregs.cs.selector = 0
                try vcpu.setSpecialRegisters(sregs)
                var regs = kvm_regs()
                regs.rip = Self.entry
                regs.rflags = 2
                try vcpu.setRegisters(regs)
            }
        }
    }

    struct UnexpectedExit: Error { let exit: String }

    /// Runs until `hlt`; returns how many PIO and MMIO exits were dispatched.
    @discardableResult
    func runToHalt(maxExits: Int = 100) throws -> (pio: Int, mmio: Int) {
        var counts = (pio: 0, mmio: 0)
        for _ in 0..<maxExits {
            switch try vcpu.run() {
            case .io(let port, let isWrite, let size, let count, let data):
                pio.access(UInt64(port), isWrite: isWrite, size: size, count: count, data: data)
                counts.pio += 1
            case .mmio(let address, let isWrite, let data):
                mmio.access(address, isWrite: isWrite, size: data.count, data: data)
                counts.mmio += 1
            case .halt:
                return counts
            case let exit:
                throw UnexpectedExit(exit: "\(exit)")
            }
        }
        throw UnexpectedExit(exit: "no hlt within \(maxExits) exits")
    }
}
