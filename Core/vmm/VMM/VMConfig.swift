/// Everything needed to build one VM. Filled from `vmm run`'s command line (or by concierge).
public struct VMConfig: Sendable {
    /// Where the guest's serial console goes.
    public enum SerialOutput: Sendable, Equatable {
        case stdout
        case file(String)
        case none
    }

    /// A disk image exposed as a virtio-blk device.
    public struct Disk: Sendable, Equatable {
        public var path: String
        public var readOnly: Bool

        public init(path: String, readOnly: Bool) {
            self.path = path
            self.readOnly = readOnly
        }
    }

    public var kernelPath: String
    public var initrdPath: String?
    /// Extra kernel parameters, appended to ``defaultParameters``.
    public var parameters: String = ""
    public var memoryMiB: UInt64 = 256
    public var cpus: Int = 1
    /// Host CPUs the vCPU threads run on (nil: wherever the scheduler puts them).
    public var vcpuAffinity: CPUSet?
    /// Host CPUs the VMM's other threads run on: the device thread above all (nil: anywhere).
    public var deviceAffinity: CPUSet?
    public var serial: SerialOutput = .stdout
    /// Output of a virtio-console (the guest's hvc0), if the VM has one; host input then goes
    /// to hvc0 instead of the serial port.
    public var console: SerialOutput?
    /// Whether the guest's console reads the host's stdin.
    public var serialInput = true
    /// Path of the control socket (stop, pause, resume, status), if any.
    public var controlSocket: String?
    /// virtio-vsock: the guest's CID and the host Unix socket (Firecracker's convention).
    public var vsock: (cid: UInt64, socketPath: String)?
    /// Per-port vsock listeners: a plain Unix socket for each guest port (needs ``vsock``).
    public var vsockPortSockets: [(port: UInt32, path: String)] = []
    /// Run under ``VMMSandbox`` (seccomp allowlist, no capabilities) once the VM is built.
    public var sandbox = true
    /// Disks in order: the first is /dev/vda in the guest.
    public var disks: [Disk] = []
    /// A virtio-net NIC on a TAP interface, if the VM has one.
    public var net: NetConfig?

    /// What every guest's command line starts with: the console on COM1, reboot through the
    /// keyboard controller and power-off through ACPI S5 (both end the VM), a panic that reboots
    /// at once, and PCI found by probing (the ACPI tables describe no host bridge).
    public static let defaultParameters =
        "console=ttyS0 reboot=k panic=-1 pci=noacpi i8042.noaux i8042.nomux i8042.nopnp"

    public init(kernelPath: String) {
        self.kernelPath = kernelPath
    }

    /// The full kernel command line.
    public var commandLine: String {
        parameters.isEmpty ? Self.defaultParameters : Self.defaultParameters + " " + parameters
    }
}
