import GRPCCore
import GuestProtocol

/// maitred's gRPC service (vsock port 8888): each RPC lives in a `MaitredService+<Facet>.swift`.
public struct MaitredService: Vmtools_Guest_Maitred.SimpleServiceProtocol {
    /// What maitred does when asked to shut down.
    public enum ShutdownAction: Sendable {
        /// As PID 1: sync, end every process, unmount, power off.
        case powerOff
        /// Run by hand or in tests: call this (e.g. stop the servers).
        case call(@Sendable () -> Void)
    }

    let reaper: ProcessReaper
    let shutdownAction: ShutdownAction
    /// Root of the files maitred writes (resolv.conf under `<root>/etc`): "/" in a guest.
    let root: String
    let containers: ContainerManager

    /// - Parameter containers: where containers run; by default garcon from /usr/bin and
    ///   cgroups under /sys/fs/cgroup/containers.
    public init(
        reaper: ProcessReaper, shutdownAction: ShutdownAction, root: String = "/", containers: ContainerManager? = nil
    ) {
        self.reaper = reaper
        self.shutdownAction = shutdownAction
        self.root = root
        self.containers = containers ?? ContainerManager(reaper: reaper)
    }
}
