import CKVM

/// Why `KVM_RUN` returned to the VMM.
public enum VCPUExit {
    /// Port I/O: `data` holds `size * count` bytes (written by the guest for `out`, to be filled for `in`).
    case io(port: UInt16, isWrite: Bool, size: Int, count: Int, data: UnsafeMutableRawBufferPointer)
    /// Memory-mapped I/O outside guest RAM: `data` holds `data.count` bytes, filled by the VMM for reads.
    case mmio(address: UInt64, isWrite: Bool, data: UnsafeMutableRawBufferPointer)
    /// The guest executed `hlt` with no in-kernel irqchip to wait on.
    case halt
    /// Triple fault or similar: the guest reset itself.
    case shutdown
    /// The guest asked for a reset, shutdown or crash (`KVM_SYSTEM_EVENT_*`).
    case systemEvent(type: UInt32)
    /// KVM could not handle something for the guest (`KVM_EXIT_INTERNAL_ERROR` suberror).
    case internalError(suberror: UInt32)
    /// VM entry failed (hardware reason code).
    case failEntry(reason: UInt64)
    /// `KVM_RUN` was interrupted by a signal or ``VCPU/requestExit()``.
    case interrupted
    /// Any other exit reason.
    case other(reason: UInt32)

    init(run: UnsafeMutablePointer<kvm_run>, base: UnsafeMutableRawPointer, size: Int) {
        switch Int32(run.pointee.exit_reason) {
        case KVM_EXIT_IO:
            let io = ckvm_run_io(run)
            let bytes = Int(io.size) * Int(io.count)
            // The kernel places data inside the mapping; refuse anything that claims otherwise.
            guard io.data_offset < UInt64(size), UInt64(bytes) <= UInt64(size) - io.data_offset else {
                self = .other(reason: UInt32(KVM_EXIT_IO))
                return
            }
            self = .io(
                port: io.port, isWrite: io.direction == KVM_EXIT_IO_OUT, size: Int(io.size), count: Int(io.count),
                data: UnsafeMutableRawBufferPointer(start: base + Int(io.data_offset), count: bytes))
        case KVM_EXIT_MMIO:
            let length = min(Int(ckvm_run_mmio_len(run)), 8)
            self = .mmio(
                address: ckvm_run_mmio_addr(run), isWrite: ckvm_run_mmio_is_write(run) != 0,
                data: UnsafeMutableRawBufferPointer(start: ckvm_run_mmio_data(run), count: length))
        case KVM_EXIT_HLT:
            self = .halt
        case KVM_EXIT_SHUTDOWN:
            self = .shutdown
        case KVM_EXIT_SYSTEM_EVENT:
            self = .systemEvent(type: ckvm_run_system_event_type(run))
        case KVM_EXIT_INTERNAL_ERROR:
            self = .internalError(suberror: ckvm_run_internal_suberror(run))
        case KVM_EXIT_FAIL_ENTRY:
            self = .failEntry(reason: ckvm_run_fail_entry_reason(run))
        case KVM_EXIT_INTR:
            self = .interrupted
        default:
            self = .other(reason: run.pointee.exit_reason)
        }
    }
}
