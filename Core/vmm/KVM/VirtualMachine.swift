import CKVM

#if canImport(Glibc)
    import Glibc
#endif

/// A KVM virtual machine: memory slots, interrupt controllers, and the vCPUs it creates.
///
/// VM-level ioctls are safe to issue from any thread, so the type is `Sendable`.
public final class VirtualMachine: Sendable {
    /// The VM file descriptor.
    public let fd: Int32
    /// The system handle the VM came from (kept alive for capability queries).
    public let system: KVMSystem

    init(fd: Int32, system: KVMSystem) {
        self.fd = fd
        self.system = system
    }

    deinit { close(fd) }

    // MARK: - Memory

    /// Registers `size` bytes of host memory at `hostAddress` as guest RAM at `guestAddress`.
    public func setUserMemoryRegion(
        slot: UInt32, guestAddress: UInt64, size: UInt64, hostAddress: UInt, readOnly: Bool = false
    ) throws(KVMError) {
        var region = kvm_userspace_memory_region(
            slot: slot, flags: readOnly ? UInt32(KVM_MEM_READONLY) : 0, guest_phys_addr: guestAddress,
            memory_size: size, userspace_addr: UInt64(hostAddress))
        try kvmIoctl(fd, CKVM_SET_USER_MEMORY_REGION, "KVM_SET_USER_MEMORY_REGION", with: &region)
    }

    // MARK: - x86 platform

    /// Places the three pages KVM needs for real-mode TSS emulation (Intel only; harmless elsewhere).
    public func setTSSAddress(_ address: UInt64) throws(KVMError) {
        try kvmIoctl(fd, CKVM_SET_TSS_ADDR, "KVM_SET_TSS_ADDR", value: UInt(address))
    }

    /// Places the identity-map page KVM needs for real mode on Intel.
    public func setIdentityMapAddress(_ address: UInt64) throws(KVMError) {
        var value = address
        try kvmIoctl(fd, CKVM_SET_IDENTITY_MAP_ADDR, "KVM_SET_IDENTITY_MAP_ADDR", with: &value)
    }

    /// Creates the in-kernel PIC, IOAPIC and local APICs.
    public func createIRQChip() throws(KVMError) {
        try kvmIoctl(fd, CKVM_CREATE_IRQCHIP, "KVM_CREATE_IRQCHIP", value: 0)
    }

    /// Creates the in-kernel i8254 PIT.
    public func createPIT2() throws(KVMError) {
        var config = kvm_pit_config()
        try kvmIoctl(fd, CKVM_CREATE_PIT2, "KVM_CREATE_PIT2", with: &config)
    }

    // MARK: - Interrupts

    /// Raises or lowers a GSI line of the in-kernel irqchip.
    public func setIRQLine(_ gsi: UInt32, high: Bool) throws(KVMError) {
        var level = kvm_irq_level()
        level.irq = gsi
        level.level = high ? 1 : 0
        try kvmIoctl(fd, CKVM_IRQ_LINE, "KVM_IRQ_LINE", with: &level)
    }

    /// Injects one MSI.
    public func signalMSI(addressLow: UInt32, addressHigh: UInt32, data: UInt32) throws(KVMError) {
        var msi = kvm_msi()
        msi.address_lo = addressLow
        msi.address_hi = addressHigh
        msi.data = data
        try kvmIoctl(fd, CKVM_SIGNAL_MSI, "KVM_SIGNAL_MSI", with: &msi)
    }

    /// Makes a write to `eventfd` raise `gsi` (`KVM_IRQFD`).
    public func registerIRQFD(eventfd: Int32, gsi: UInt32) throws(KVMError) {
        var irqfd = kvm_irqfd()
        irqfd.fd = UInt32(bitPattern: eventfd)
        irqfd.gsi = gsi
        try kvmIoctl(fd, CKVM_IRQFD, "KVM_IRQFD", with: &irqfd)
    }

    /// Makes guest writes to `address` signal `eventfd` instead of exiting to the VMM
    /// (`length` 0 matches writes of any size), or with `deassign` undoes such a registration.
    public func registerIOEventFD(
        eventfd: Int32, address: UInt64, length: UInt32, isPIO: Bool, datamatch: UInt64? = nil, deassign: Bool = false
    ) throws(KVMError) {
        var event = kvm_ioeventfd()
        event.addr = address
        event.len = length
        event.fd = eventfd
        var flags: UInt32 = 0
        if isPIO { flags |= UInt32(1 << kvm_ioeventfd_flag_nr_pio) }
        if deassign { flags |= UInt32(1 << kvm_ioeventfd_flag_nr_deassign) }
        if let datamatch {
            flags |= UInt32(1 << kvm_ioeventfd_flag_nr_datamatch)
            event.datamatch = datamatch
        }
        event.flags = flags
        try kvmIoctl(fd, CKVM_IOEVENTFD, deassign ? "KVM_IOEVENTFD (deassign)" : "KVM_IOEVENTFD", with: &event)
    }

    /// Replaces the whole GSI routing table (`KVM_SET_GSI_ROUTING`). The table must include the
    /// irqchip routes of ``IRQRoute/defaultIRQChipRoutes`` for the legacy lines to keep working.
    public func setGSIRouting(_ routes: [IRQRoute]) throws(KVMError) {
        let raw = routes.map { route -> ckvm_route in
            switch route.target {
            case .irqchip(let chip, let pin):
                return ckvm_route(gsi: route.gsi, type: UInt32(KVM_IRQ_ROUTING_IRQCHIP), a: chip, b: pin, c: 0)
            case .msi(let address, let data):
                return ckvm_route(
                    gsi: route.gsi, type: UInt32(KVM_IRQ_ROUTING_MSI), a: UInt32(truncatingIfNeeded: address),
                    b: UInt32(address >> 32), c: data)
            }
        }
        while true {
            let result = raw.withUnsafeBufferPointer { ckvm_set_gsi_routing(fd, $0.baseAddress, UInt32($0.count)) }
            if result >= 0 { return }
            if errno != EINTR { throw .ioctl("KVM_SET_GSI_ROUTING", errno: errno) }
        }
    }

    // MARK: - vCPUs

    /// Creates vCPU `id` (its initial APIC ID).
    public func createVCPU(id: UInt32) throws(KVMError) -> VCPU {
        let vcpufd = try kvmIoctl(fd, CKVM_CREATE_VCPU, "KVM_CREATE_VCPU", value: UInt(id))
        do {
            return try VCPU(fd: vcpufd, id: id, mmapSize: system.vcpuMmapSize())
        } catch {
            close(vcpufd)
            throw error
        }
    }
}
