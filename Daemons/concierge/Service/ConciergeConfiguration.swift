/// Where concierge keeps things and what it may hand out.
public struct ConciergeConfiguration: Sendable {
    /// Per-VM runtime folders (`<runtime>/<vm>/`: sockets, serial log, vmm log).
    public var runtimeDirectory = "/run/vmtools"
    /// Persistent state: allocations and running VMs, disk images, guest images.
    public var stateDirectory = "/var/lib/vmtools"
    /// The VMM executable.
    public var vmmPath = "/usr/local/bin/vmm"
    public var pools = PoolConfiguration()
    /// TAPs are `<prefix><subnet index>` (ChromeOS: vmtap0, vmtap1, ...).
    public var tapPrefix = "vmtap"
    /// How long a guest may take from vmm's start to maitred's VmReady.
    public var startTimeoutSeconds: Double = 120
    /// How long each step of stopping a VM may take (Shutdown, the control socket, SIGTERM).
    public var stopStepSeconds: Double = 10
    /// The group whose members may reach a VM's shell and agent sockets and read its logs
    /// (the group that may call concierge); nothing is shared when the group does not exist.
    public var userGroup = "vmtools"

    public init() {}

    public var imagesDirectory: String { "\(stateDirectory)/images" }
    public var disksDirectory: String { "\(stateDirectory)/disks" }
    public var stateFile: String { "\(stateDirectory)/concierge.json" }
    public func runtimeDirectory(of vm: String) -> String { "\(runtimeDirectory)/\(vm)" }
}
