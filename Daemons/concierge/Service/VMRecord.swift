/// A VM concierge runs, as persisted so that a restarted concierge finds it again.
public struct VMRecord: Codable, Sendable, Equatable {
    public var name: String
    public var pid: Int32
    /// The process's start time (clock ticks after boot, /proc/PID/stat field 22): a PID that
    /// was reused by another process after a reboot or crash does not match it.
    public var startTicks: UInt64
    public var resources: VMResources
    public var tap: String
    public var cpus: Int
    public var memoryMiB: Int
    public var kernel: String
    /// Seconds since the epoch when the guest became ready.
    public var startedAt: Double
    /// The disk files it was given, read-only and writable (absent in state from before they were
    /// recorded).
    public var disks: [String]?
    public var writableDisks: [String]?
    /// The handle of the VM's 9P server at seneschal, when it has one.
    public var shareServer: UInt32?
    /// Its mojo-proxy channels (absent: none), whose host-side unit goes with the VM.
    public var mojoChannels: [MojoChannel]?

    public init(
        name: String, pid: Int32, startTicks: UInt64, resources: VMResources, tap: String, cpus: Int, memoryMiB: Int,
        kernel: String, startedAt: Double, disks: [String] = [], writableDisks: [String] = [],
        shareServer: UInt32? = nil, mojoChannels: [MojoChannel]? = nil
    ) {
        self.name = name
        self.pid = pid
        self.startTicks = startTicks
        self.resources = resources
        self.tap = tap
        self.cpus = cpus
        self.memoryMiB = memoryMiB
        self.kernel = kernel
        self.startedAt = startedAt
        self.disks = disks
        self.writableDisks = writableDisks
        self.shareServer = shareServer
        self.mojoChannels = mojoChannels
    }
}

/// A process known by its PID and start time (so a reused PID is not mistaken for it).
public struct ProcessIdentity: Codable, Sendable, Equatable {
    public var pid: Int32
    public var startTicks: UInt64

    public init(pid: Int32, startTicks: UInt64) {
        self.pid = pid
        self.startTicks = startTicks
    }
}

/// Everything concierge persists.
public struct ConciergeState: Codable, Sendable, Equatable {
    public var pools = ResourcePools()
    public var vms: [String: VMRecord] = [:]
    /// The vmm of each VM whose start was under way: a concierge killed then leaves it behind,
    /// unconfigured, and the next one ends it. (Absent in state from before it was recorded.)
    public var startingVMMs: [String: ProcessIdentity]?

    public init() {}
}

/// What a client is told about a VM (GetVmInfo, ListVms, VmStarted).
public struct VMInfo: Sendable, Equatable {
    public var name: String
    public var state: String
    public var cid: UInt32
    public var pid: Int32
    public var ipv4: String
    public var hostIPv4: String
    public var netmask: String
    public var mac: String
    public var tap: String
    public var cpus: Int
    public var memoryMiB: Int
    public var kernel: String
    public var vsockSocket: String
    public var maitredSocket: String
    public var shellSocket: String
    public var controlSocket: String
    public var serialLog: String
    public var startedAt: Double
    /// seneschal's handle of the VM's 9P server (0: none) and where the guest mounted it ("": nowhere).
    public var shareServer: UInt32 = 0
    public var sharedFolder = ""
    public var mojoChannels: [MojoChannel] = []
}

/// Why a VM stopped (the VmStopped signal's reason).
public enum StopReason: String, Sendable {
    /// StopVm or StopAllVms.
    case requested
    /// The guest powered itself off; vmm exited 0.
    case exited
    /// vmm died or the guest crashed.
    case crashed
    /// Concierge is shutting down (its unit stopped).
    case serviceShutdown = "service-shutdown"
    /// It never became ready.
    case startFailed = "start-failed"
}

/// What concierge tells the world as VMs come and go.
public enum VMEvent: Sendable {
    case starting(name: String)
    case started(VMInfo)
    case stopping(name: String)
    case stopped(name: String, reason: StopReason)
}
