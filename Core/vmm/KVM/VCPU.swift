import CKVM

#if canImport(Glibc)
    import Glibc
#endif

/// One virtual CPU: its file descriptor and the `kvm_run` structure it shares with the kernel.
///
/// A vCPU is driven by a single thread (the one that calls ``run()``); other threads may only call
/// ``requestExit()``. It is marked `Sendable` so that it can be handed to that thread.
public final class VCPU: @unchecked Sendable {
    /// The vCPU file descriptor.
    public let fd: Int32
    /// The vCPU index (and initial APIC ID).
    public let id: UInt32
    private let runMapping: UnsafeMutableRawPointer
    private let runSize: Int
    private var runStruct: UnsafeMutablePointer<kvm_run> { runMapping.assumingMemoryBound(to: kvm_run.self) }

    init(fd: Int32, id: UInt32, mmapSize: Int) throws(KVMError) {
        let mapping = mmap(nil, mmapSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        guard let mapping, mapping != MAP_FAILED else { throw .mmap("kvm_run of vCPU \(id)", errno: errno) }
        self.fd = fd
        self.id = id
        self.runMapping = mapping
        self.runSize = mmapSize
    }

    deinit {
        munmap(runMapping, runSize)
        close(fd)
    }

    // MARK: - Running

    /// Enters the guest until the next exit that needs the VMM.
    ///
    /// Buffers inside the returned exit point into `kvm_run` and are valid until the next call.
    public func run() throws(KVMError) -> VCPUExit {
        if ckvmIoctlValue(fd, CKVM_RUN, 0) < 0 {
            let code = errno
            // EINTR: a signal (or requestExit) kicked us out; EAGAIN: nothing to run yet.
            if code == EINTR || code == EAGAIN {
                runStruct.pointee.immediate_exit = 0
                return .interrupted
            }
            throw .ioctl("KVM_RUN on vCPU \(id)", errno: code)
        }
        return VCPUExit(run: runStruct, base: runMapping, size: runSize)
    }

    /// Makes the current or next ``run()`` return ``VCPUExit/interrupted`` promptly.
    ///
    /// Pair with a signal to the vCPU thread to interrupt a guest that is already running.
    public func requestExit() {
        runStruct.pointee.immediate_exit = 1
    }

    // MARK: - Registers

    /// The general-purpose registers.
    public func registers() throws(KVMError) -> kvm_regs {
        var regs = kvm_regs()
        try kvmIoctl(fd, CKVM_GET_REGS, "KVM_GET_REGS", with: &regs)
        return regs
    }

    /// Sets the general-purpose registers.
    public func setRegisters(_ regs: kvm_regs) throws(KVMError) {
        var regs = regs
        try kvmIoctl(fd, CKVM_SET_REGS, "KVM_SET_REGS", with: &regs)
    }

    /// The segment, control and descriptor-table registers.
    public func specialRegisters() throws(KVMError) -> kvm_sregs {
        var sregs = kvm_sregs()
        try kvmIoctl(fd, CKVM_GET_SREGS, "KVM_GET_SREGS", with: &sregs)
        return sregs
    }

    /// Sets the segment, control and descriptor-table registers.
    public func setSpecialRegisters(_ sregs: kvm_sregs) throws(KVMError) {
        var sregs = sregs
        try kvmIoctl(fd, CKVM_SET_SREGS, "KVM_SET_SREGS", with: &sregs)
    }

    /// Sets the x87/SSE state.
    public func setFPU(_ fpu: kvm_fpu) throws(KVMError) {
        var fpu = fpu
        try kvmIoctl(fd, CKVM_SET_FPU, "KVM_SET_FPU", with: &fpu)
    }

    /// Sets this vCPU's CPUID table.
    public func setCPUID(_ entries: [CPUIDEntry]) throws(KVMError) {
        let (_, code) = CPUIDEntry.withKVMCPUID2(entries: entries, capacity: entries.count) { raw in
            ckvmIoctl(fd, CKVM_SET_CPUID2, raw) < 0 ? errno : 0
        }
        if code != 0 { throw .ioctl("KVM_SET_CPUID2 on vCPU \(id)", errno: code) }
    }

    /// Writes model-specific registers; every one must be accepted.
    public func setMSRs(_ msrs: [(index: UInt32, value: UInt64)]) throws(KVMError) {
        guard !msrs.isEmpty else { return }
        let header = MemoryLayout<kvm_msrs>.size
        let stride = MemoryLayout<kvm_msr_entry>.stride
        let raw = UnsafeMutableRawPointer.allocate(byteCount: header + stride * msrs.count, alignment: 8)
        defer { raw.deallocate() }
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: header + stride * msrs.count)
        raw.assumingMemoryBound(to: kvm_msrs.self).pointee.nmsrs = UInt32(msrs.count)
        let table = (raw + header).assumingMemoryBound(to: kvm_msr_entry.self)
        for (i, msr) in msrs.enumerated() {
            table[i].index = msr.index
            table[i].data = msr.value
        }
        let written = try kvmIoctl(fd, CKVM_SET_MSRS, "KVM_SET_MSRS", raw)
        guard written == msrs.count else {
            let rejected = msrs[Int(written)].index
            throw .invalidArgument("KVM_SET_MSRS on vCPU \(id) rejected MSR 0x\(String(rejected, radix: 16))")
        }
    }

    /// Reads one model-specific register.
    public func msr(_ index: UInt32) throws(KVMError) -> UInt64 {
        let header = MemoryLayout<kvm_msrs>.size
        let raw = UnsafeMutableRawPointer.allocate(byteCount: header + MemoryLayout<kvm_msr_entry>.stride, alignment: 8)
        defer { raw.deallocate() }
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: header + MemoryLayout<kvm_msr_entry>.stride)
        raw.assumingMemoryBound(to: kvm_msrs.self).pointee.nmsrs = 1
        let entry = (raw + header).assumingMemoryBound(to: kvm_msr_entry.self)
        entry.pointee.index = index
        let read = try kvmIoctl(fd, CKVM_GET_MSRS, "KVM_GET_MSRS", raw)
        guard read == 1 else {
            throw .invalidArgument("KVM_GET_MSRS on vCPU \(id) cannot read MSR 0x\(String(index, radix: 16))")
        }
        return entry.pointee.data
    }
}

// MARK: - Local APIC

extension VCPU {
    /// Reads the in-kernel local APIC's 1 KiB register page, lets `body` edit it, and writes it back.
    public func modifyLocalAPIC(_ body: (inout [UInt8]) -> Void) throws(KVMError) {
        var state = kvm_lapic_state()
        try kvmIoctl(fd, CKVM_GET_LAPIC, "KVM_GET_LAPIC", with: &state)
        var bytes = withUnsafeBytes(of: &state.regs) { Array($0) }
        body(&bytes)
        withUnsafeMutableBytes(of: &state.regs) { $0.copyBytes(from: bytes.prefix($0.count)) }
        try kvmIoctl(fd, CKVM_SET_LAPIC, "KVM_SET_LAPIC", with: &state)
    }
}
