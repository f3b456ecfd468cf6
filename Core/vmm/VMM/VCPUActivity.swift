import KVM
import Synchronization

/// What one vCPU thread is doing, for `vmm status`: a guest CPU that stopped making progress
/// shows whether its thread is inside KVM_RUN (the guest, or the kernel on its behalf) or held
/// in the VMM handling an exit, and which exit came last.
final class VCPUActivity: Sendable {
    let id: UInt32
    private let inKVMRun = Atomic<Bool>(false)
    private let exits = Atomic<UInt64>(0)
    /// The last exit: its kind in the top byte, the port or address below.
    private let lastExit = Atomic<UInt64>(0)

    init(id: UInt32) { self.id = id }

    /// Runs `body` (one KVM_RUN) marked as inside KVM, and records the exit it returns.
    func running(_ body: () throws -> VCPUExit) rethrows -> VCPUExit {
        inKVMRun.store(true, ordering: .relaxed)
        defer { inKVMRun.store(false, ordering: .relaxed) }
        let exit = try body()
        exits.add(1, ordering: .relaxed)
        lastExit.store(Self.code(exit), ordering: .relaxed)
        return exit
    }

    private static func code(_ exit: VCPUExit) -> UInt64 {
        let (kind, location): (UInt64, UInt64)
        switch exit {
        case .io(let port, let isWrite, _, _, _): (kind, location) = (isWrite ? 1 : 2, UInt64(port))
        case .mmio(let address, let isWrite, _): (kind, location) = (isWrite ? 3 : 4, address)
        case .interrupted: (kind, location) = (5, 0)
        default: (kind, location) = (6, 0)
        }
        return kind << 56 | (location & 0x00FF_FFFF_FFFF_FFFF)
    }

    /// `{"id":0,"in_kvm_run":true,"exits":N,"last_exit":"io-write 0x3f8"}`.
    var json: String {
        let code = lastExit.load(ordering: .relaxed)
        let names = ["none", "io-write", "io-read", "mmio-write", "mmio-read", "interrupted", "other"]
        let kind = Int(code >> 56)
        let last = "\(kind < names.count ? names[kind] : "other") 0x\(String(code & 0x00FF_FFFF_FFFF_FFFF, radix: 16))"
        return
            #"{"id":\#(id),"in_kvm_run":\#(inKVMRun.load(ordering: .relaxed)),"exits":\#(exits.load(ordering: .relaxed)),"last_exit":"\#(last)"}"#
    }
}
