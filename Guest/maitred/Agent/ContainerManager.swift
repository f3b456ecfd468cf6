import CGuestSystem
import GRPCCore
import GuestProtocol
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The containers maitred runs: a root folder in the guest made the root of new mount, PID,
/// UTS, IPC and cgroup namespaces, with its own hostname, a cgroup of its own, the host's token
/// at `/dev/.container_token`, and garcon as its first process. No container manager (LXD) is
/// needed; the network and vsock are the VM's.
public final class ContainerManager: Sendable {
    public struct Configuration: Sendable {
        /// garcon, passed into each container by descriptor and run as `garcon`: maitred's own
        /// executable (it runs as garcon by that name), so the two always match, even when the
        /// guest switched to a root disk and the initramfs holding maitred is gone.
        public var garconPath = "/proc/self/exe"
        /// Each container gets `<cgroupRoot>/<name>` when cgroup2 is mounted at the root's parent.
        public var cgroupRoot = "/sys/fs/cgroup/containers"
        /// The containers' standard input, output and error (/dev/null when it cannot be opened).
        public var consolePath = "/dev/console"
        /// Always move the root and chroot, never pivot_root (tests of the initramfs path).
        public var movesRoot = false
        public init() {}
    }

    /// A running container.
    public struct Running: Sendable, Equatable {
        public var name: String
        public var rootfs: String
        public var hostname: String
        public var pid: pid_t
        var cgroup: String?
    }

    let configuration: Configuration
    let reaper: ProcessReaper
    private let running = Mutex<[String: Running]>([:])

    public init(reaper: ProcessReaper, configuration: Configuration = Configuration()) {
        self.reaper = reaper
        self.configuration = configuration
    }

    public var containers: [Running] { running.withLock { $0.values.sorted { $0.name < $1.name } } }

    // MARK: - Start

    /// What to start.
    public struct Request: Sendable {
        public var name: String
        public var rootfs: String
        public var token: String
        public var hostname = ""
        /// argv in the container; empty: garcon with `garconArguments`.
        public var command: [String] = []
        public var garconArguments: [String] = []
        public var environment: [String: String] = [:]
        /// Copy-on-write: `rootfs` read-only beneath an overlay whose changes live here.
        public var changesDirectory = ""

        public init(name: String, rootfs: String, token: String) {
            self.name = name
            self.rootfs = rootfs
            self.token = token
        }
    }

    /// Starts a container; throws a gRPC error naming what was wrong or what failed.
    public func start(_ request: Request) throws(RPCError) -> Running {
        try Self.validate(request)
        let hostname = request.hostname.isEmpty ? request.name : request.hostname
        let claimed = running.withLock { running -> Bool in
            guard running[request.name] == nil else { return false }
            running[request.name] = Running(
                name: request.name, rootfs: request.rootfs, hostname: hostname, pid: 0, cgroup: nil)
            return true
        }
        guard claimed else { throw RPCError(code: .alreadyExists, message: "container \(request.name) is running") }
        do {
            let container = try launch(request, hostname: hostname)
            running.withLock { $0[request.name] = container }
            watch(container)
            return container
        } catch {
            _ = running.withLock { $0.removeValue(forKey: request.name) }
            throw error
        }
    }

    private func launch(_ request: Request, hostname: String) throws(RPCError) -> Running {
        var programFD: Int32 = -1
        var argv = request.command
        if argv.isEmpty {
            programFD = open(configuration.garconPath, O_RDONLY | O_CLOEXEC)
            guard programFD >= 0 else { throw AgentError.system("garcon at \(configuration.garconPath)", errno: errno) }
            argv = ["garcon"] + request.garconArguments
        }
        defer { if programFD >= 0 { close(programFD) } }
        let cgroup = try makeCgroup(request.name)
        let cgroupFD = cgroup.map { open($0, O_RDONLY | O_DIRECTORY | O_CLOEXEC) } ?? -1
        defer { if cgroupFD >= 0 { close(cgroupFD) } }
        var stdio = open(configuration.consolePath, O_WRONLY | O_NOCTTY | O_CLOEXEC)
        if stdio < 0 { stdio = open("/dev/null", O_RDWR | O_CLOEXEC) }
        defer { if stdio >= 0 { close(stdio) } }

        let environment = ProcessSpawner.defaultEnvironment.merging(["container": "vmtools"]) { $1 }
            .merging(request.environment) { $1 }
        var spec = Spec(
            rootfs: request.rootfs, hostname: hostname, token: request.token, programFD: programFD, argv: argv,
            environment: environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }, cgroupFD: cgroupFD,
            stdio: stdio, movesRoot: configuration.movesRoot)
        if !request.changesDirectory.isEmpty {
            let changes = request.changesDirectory
            var made = ""
            let parents = changes.split(separator: "/").map { "/" + $0 }.map { part -> String in
                made += part
                return made
            }
            for folder in parents + ["\(changes)/upper", "\(changes)/work", "\(changes)/root"] {
                guard mkdir(folder, 0o755) == 0 || errno == EEXIST else {
                    throw AgentError.system("container \(request.name)'s changes folder \(folder)", errno: errno)
                }
            }
            spec.overlayTarget = "\(changes)/root"
            spec.overlayOptions = "lowerdir=\(request.rootfs),upperdir=\(changes)/upper,workdir=\(changes)/work"
            // Changes kept inside the image (the default: the guest's own /) would show through
            // it, this container's and every other's: that folder is covered in the container.
            let image = request.rootfs == "/" ? "" : request.rootfs
            let parent = String(changes[..<(changes.lastIndex(of: "/") ?? changes.startIndex)])
            if parent.hasPrefix(image + "/") {
                spec.overlayHide = "\(changes)/root" + parent.dropFirst(image.count)
            }
        }
        var outcome = Outcome()
        do {
            // Registered with the reaper before its status can be collected.
            _ = try reaper.launch { () throws(RPCError) -> pid_t in
                outcome = spec.start()
                guard outcome.result >= 0 else {
                    throw AgentError.system("starting container \(request.name): clone3", errno: -outcome.result)
                }
                return outcome.pid
            }
        } catch {
            removeCgroup(cgroup)
            throw error
        }
        let pid = outcome.pid
        if outcome.result == 1 {
            // The child has exited; its cgroup can go once it is reaped.
            Task { [reaper] in
                _ = await reaper.wait(for: pid)
                self.removeCgroup(cgroup)
            }
            throw AgentError.system(
                "starting container \(request.name): \(Self.stepName(outcome.step))", errno: outcome.error)
        }
        return Running(name: request.name, rootfs: request.rootfs, hostname: hostname, pid: pid, cgroup: cgroup)
    }

    /// Forgets the container when its first process ends (the kernel then ends the rest of its
    /// PID namespace), and removes its cgroup.
    private func watch(_ container: Running) {
        Task { [reaper] in
            let termination = await reaper.wait(for: container.pid)
            running.withLock { running in
                if running[container.name]?.pid == container.pid { running[container.name] = nil }
            }
            removeCgroup(container.cgroup)
            KernelLog.info("container \(container.name) ended: \(termination)")
        }
    }

    // MARK: - Stop

    /// Sends SIGTERM to the container's first process, SIGKILL after `grace`, and returns once
    /// it has ended (and with it every process of the container).
    public func stop(_ name: String, grace: Duration = .seconds(10)) async throws(RPCError) {
        guard let container = running.withLock({ $0[name] }), container.pid > 0 else {
            throw RPCError(code: .notFound, message: "no container named \(name) is running")
        }
        kill(container.pid, SIGTERM)
        if await ended(container, within: grace) { return }
        kill(container.pid, SIGKILL)
        guard await ended(container, within: .seconds(10)) else {
            throw RPCError(code: .deadlineExceeded, message: "container \(name) did not end after SIGKILL")
        }
    }

    private func ended(_ container: Running, within limit: Duration) async -> Bool {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            if running.withLock({ $0[container.name]?.pid != container.pid }) { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return running.withLock { $0[container.name]?.pid != container.pid }
    }
}

// MARK: - The C side

extension ContainerManager {
    struct Outcome {
        var result: Int32 = 0
        var pid: Int32 = 0
        var step: Int32 = 0
        var error: Int32 = 0
    }

    /// Everything `cgs_start_container` takes, kept as Swift values until the call.
    struct Spec {
        var rootfs: String
        var hostname: String
        var token: String
        var programFD: Int32
        var argv: [String]
        var environment: [String]
        var cgroupFD: Int32
        var stdio: Int32
        var movesRoot: Bool
        var overlayTarget: String?
        var overlayOptions: String?
        var overlayHide: String?

        func start() -> Outcome {
            let cArgv = argv.map { strdup($0) } + [nil]
            let cEnvironment = environment.map { strdup($0) } + [nil]
            defer {
                cArgv.forEach { free($0) }
                cEnvironment.forEach { free($0) }
            }
            var outcome = Outcome()
            rootfs.withCString { rootfs in
                hostname.withCString { hostname in
                    token.withCString { token in
                        cArgv.withUnsafeBufferPointer { argv in
                            cEnvironment.withUnsafeBufferPointer { environment in
                                let target = overlayTarget.map { strdup($0) } ?? nil
                                let options = overlayOptions.map { strdup($0) } ?? nil
                                let hide = overlayHide.map { strdup($0) } ?? nil
                                defer {
                                    free(target)
                                    free(options)
                                    free(hide)
                                }
                                // Out of memory: no overlay would mean the image itself, writable.
                                guard (overlayTarget == nil) == (target == nil),
                                    (overlayOptions == nil) == (options == nil),
                                    (overlayHide == nil) == (hide == nil)
                                else {
                                    outcome.result = -ENOMEM
                                    return
                                }
                                var container = cgs_container(
                                    rootfs: rootfs, hostname: hostname, token: token, program_fd: programFD,
                                    argv: argv.baseAddress, envp: environment.baseAddress, cgroup_fd: cgroupFD,
                                    stdio_fd: stdio, move_root: movesRoot ? 1 : 0, overlay_target: target,
                                    overlay_options: options, overlay_hide: hide)
                                outcome.result = cgs_start_container(
                                    &container, &outcome.pid, &outcome.step, &outcome.error)
                            }
                        }
                    }
                }
            }
            return outcome
        }
    }

    static func stepName(_ step: Int32) -> String {
        switch Int(step) {
        case Int(CGS_STEP_SETUP): "signals and session"
        case Int(CGS_STEP_ROOT): "binding its root folder"
        case Int(CGS_STEP_PROC): "mounting /proc"
        case Int(CGS_STEP_SYS): "mounting /sys"
        case Int(CGS_STEP_DEV): "making /dev"
        case Int(CGS_STEP_TOKEN): "writing /dev/.container_token"
        case Int(CGS_STEP_RUN): "mounting /run"
        case Int(CGS_STEP_HOSTNAME): "setting its hostname"
        case Int(CGS_STEP_PIVOT): "pivot_root into its root folder"
        case Int(CGS_STEP_STDIO): "its standard descriptors"
        case Int(CGS_STEP_EXEC): "running its first program"
        case Int(CGS_STEP_OVERLAY): "mounting its overlay"
        default: "step \(step)"
        }
    }

    // MARK: - Validation

    static func validate(_ request: Request) throws(RPCError) {
        guard ContainerName.isValid(request.name) else {
            throw AgentError.invalid(
                "container name '\(request.name)': use 1 to 63 of a-z, 0-9 and '-', not starting with '-'")
        }
        guard request.hostname.isEmpty || ContainerName.isValid(request.hostname) else {
            throw AgentError.invalid("hostname '\(request.hostname)': use 1 to 63 of a-z, 0-9 and '-'")
        }
        let overlay = !request.changesDirectory.isEmpty
        guard request.rootfs.hasPrefix("/"), overlay || request.rootfs != "/" else {
            throw AgentError.invalid("rootfs '\(request.rootfs)' must be an absolute folder other than /")
        }
        if overlay {
            // The overlay's option string separates with ',' and ':' and escapes with '\'.
            let changes = request.changesDirectory
            guard changes.hasPrefix("/"), changes != "/",
                !(changes + request.rootfs).contains(where: { ",:\\".contains($0) })
            else {
                throw AgentError.invalid(
                    "changes_dir '\(changes)' must be an absolute folder other than /, and neither it nor rootfs may hold ',', ':' or '\\'"
                )
            }
        }
        var info = stat()
        guard stat(request.rootfs, &info) == 0 else {
            throw AgentError.system("rootfs \(request.rootfs)", errno: errno)
        }
        guard info.st_mode & S_IFMT == S_IFDIR else {
            throw AgentError.invalid("rootfs \(request.rootfs) is not a folder")
        }
        guard (1...256).contains(request.token.utf8.count),
            request.token.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F })
        else {
            throw AgentError.invalid("the token must be 1 to 256 printable ASCII characters without spaces")
        }
        if let program = request.command.first, !program.hasPrefix("/") {
            throw AgentError.invalid("the command must start with an absolute path in the container, not '\(program)'")
        }
    }

    // MARK: - Cgroups

    /// `<cgroupRoot>/<name>`, made; nil when there is no cgroup2 hierarchy to make it in.
    func makeCgroup(_ name: String) throws(RPCError) -> String? {
        let root = configuration.cgroupRoot
        let parent = String(root[..<(root.lastIndex(of: "/") ?? root.endIndex)])
        guard access("\(parent)/cgroup.controllers", F_OK) == 0 else { return nil }
        guard mkdir(root, 0o755) == 0 || errno == EEXIST else {
            throw AgentError.system("cgroup \(root)", errno: errno)
        }
        let path = "\(root)/\(name)"
        guard mkdir(path, 0o755) == 0 || errno == EEXIST else {
            throw AgentError.system("cgroup \(path)", errno: errno)
        }
        return path
    }

    func removeCgroup(_ path: String?) {
        if let path { rmdir(path) }
    }
}
