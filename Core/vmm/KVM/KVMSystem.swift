import CKVM

#if canImport(Glibc)
    import Glibc
#endif

/// An open `/dev/kvm`: the system-level KVM handle that creates VMs and reports capabilities.
public final class KVMSystem: Sendable {
    /// The `/dev/kvm` file descriptor.
    public let fd: Int32

    /// Opens `path` (default `/dev/kvm`) and checks the API version.
    public init(path: String = "/dev/kvm") throws(KVMError) {
        let fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw .open(path: path, errno: errno) }
        self.fd = fd
        let version = try kvmIoctl(fd, CKVM_GET_API_VERSION, "KVM_GET_API_VERSION", value: 0)
        guard version == 12 else { throw .apiVersion(version) }
    }

    deinit { close(fd) }

    /// `KVM_CHECK_EXTENSION`: 0 when absent, otherwise a capability-specific positive value.
    public func checkExtension(_ capability: KVMCapability) -> Int32 {
        (try? kvmIoctl(fd, CKVM_CHECK_EXTENSION, "KVM_CHECK_EXTENSION", value: UInt(capability.rawValue))) ?? 0
    }

    /// Throws ``KVMError/missingCapability(_:)`` for the first capability in `required` that is absent.
    public func require(_ required: [KVMCapability]) throws(KVMError) {
        for capability in required where checkExtension(capability) <= 0 {
            throw .missingCapability(capability.name)
        }
    }

    /// Size of each vCPU's shared `kvm_run` mapping.
    public func vcpuMmapSize() throws(KVMError) -> Int {
        Int(try kvmIoctl(fd, CKVM_GET_VCPU_MMAP_SIZE, "KVM_GET_VCPU_MMAP_SIZE", value: 0))
    }

    /// Creates an empty VM.
    public func createVM() throws(KVMError) -> VirtualMachine {
        let vmfd = try kvmIoctl(fd, CKVM_CREATE_VM, "KVM_CREATE_VM", value: 0)
        return VirtualMachine(fd: vmfd, system: self)
    }

    /// The CPUID leaves this host's KVM can expose (`KVM_GET_SUPPORTED_CPUID`).
    public func supportedCPUID() throws(KVMError) -> [CPUIDEntry] {
        var capacity = 128
        while true {
            let (entries, code) = CPUIDEntry.withKVMCPUID2(capacity: capacity) { raw in
                ckvmIoctl(fd, CKVM_GET_SUPPORTED_CPUID, raw) < 0 ? errno : 0
            }
            if code == 0 { return entries }
            // E2BIG: the table is bigger than we offered; grow and ask again.
            guard code == E2BIG, capacity < 4096 else { throw .ioctl("KVM_GET_SUPPORTED_CPUID", errno: code) }
            capacity *= 2
        }
    }
}

/// A KVM capability number for `KVM_CHECK_EXTENSION`.
public struct KVMCapability: Sendable, Hashable {
    public let rawValue: Int32
    public let name: String

    public init(_ rawValue: Int32, _ name: String) {
        self.rawValue = rawValue
        self.name = name
    }

    public static let irqchip = Self(KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP")
    public static let userMemory = Self(KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY")
    public static let setTSSAddress = Self(KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR")
    public static let extendedCPUID = Self(KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID")
    public static let pit2 = Self(KVM_CAP_PIT2, "KVM_CAP_PIT2")
    public static let irqfd = Self(KVM_CAP_IRQFD, "KVM_CAP_IRQFD")
    public static let ioeventfd = Self(KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD")
    public static let irqRouting = Self(KVM_CAP_IRQ_ROUTING, "KVM_CAP_IRQ_ROUTING")
    public static let signalMSI = Self(KVM_CAP_SIGNAL_MSI, "KVM_CAP_SIGNAL_MSI")
    public static let immediateExit = Self(KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT")
    public static let maxVCPUs = Self(KVM_CAP_MAX_VCPUS, "KVM_CAP_MAX_VCPUS")
    public static let ioeventfdAnyLength = Self(KVM_CAP_IOEVENTFD_ANY_LENGTH, "KVM_CAP_IOEVENTFD_ANY_LENGTH")
    public static let tscDeadlineTimer = Self(KVM_CAP_TSC_DEADLINE_TIMER, "KVM_CAP_TSC_DEADLINE_TIMER")

    /// What the VMM needs to boot Linux with an in-kernel irqchip and MSI-X devices.
    public static let required: [KVMCapability] = [
        .irqchip, .userMemory, .setTSSAddress, .extendedCPUID, .irqfd, .ioeventfd, .irqRouting, .signalMSI,
        .immediateExit,
    ]
}
