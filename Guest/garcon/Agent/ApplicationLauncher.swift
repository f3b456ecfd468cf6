import CGuestSystem
import CLinux
import EventLoop
import GRPCCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Starts applications for LaunchApplication: each in a session of its own, with /dev/null for
/// its standard descriptors, in the entry's working folder; garcon does not wait for them (the
/// ``ChildReaper`` collects them).
public struct ApplicationLauncher: Sendable {
    /// The environment applications get (garcon's own, by default).
    public var environment: [String: String]

    public init(environment: [String: String]) {
        self.environment = environment
    }

    /// Starts `argv` (the program looked up in PATH when it has no slash); returns its PID.
    /// - Parameter stdout: a descriptor for its standard output instead of /dev/null.
    public func launch(_ argv: [String], workingDirectory: String? = nil, stdout: Int32 = -1) throws(RPCError)
        -> pid_t
    {
        guard let name = argv.first, !name.isEmpty else {
            throw RPCError(code: .invalidArgument, message: "argv is empty")
        }
        let program = try resolve(name)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        for fd in Int32(0)...2 { posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", O_RDWR, 0) }
        if stdout >= 0 { posix_spawn_file_actions_adddup2(&actions, stdout, 1) }
        if let workingDirectory, !workingDirectory.isEmpty {
            let result = cgs_spawn_add_chdir(&actions, workingDirectory)
            guard result == 0 else {
                throw RPCError(
                    code: .internalError, message: "working folder \(workingDirectory): \(Self.reason(result))")
            }
        }
        // garcon's signal mask and handlers are not the application's business; a session of its own.
        clinux_spawnattr_reset_signals(&attributes, cgs_spawn_setsid_flag())
        let cArgv = argv.map { strdup($0) } + [nil]
        let cEnvironment = environment.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            cArgv.forEach { free($0) }
            cEnvironment.forEach { free($0) }
        }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, program, &actions, &attributes, cArgv, cEnvironment)
        guard result == 0 else {
            let code: RPCError.Code = result == ENOENT ? .notFound : .internalError
            throw RPCError(code: code, message: "starting \(program): \(Self.reason(result))")
        }
        return pid
    }

    /// `name` as given when it has a slash, else the first executable match in PATH.
    func resolve(_ name: String) throws(RPCError) -> String {
        if name.contains("/") { return name }
        let path = environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for directory in path.split(separator: ":") where !directory.isEmpty {
            let candidate = "\(directory)/\(name)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        throw RPCError(code: .notFound, message: "no program named \(name) in PATH \(path)")
    }

    static func reason(_ code: Int32) -> String { String(cString: strerror(code)) }
}

/// Collects every child's exit status, so that launched applications leave no zombies (and, as
/// a container's first process, every orphan re-parented to garcon too). Not for a process with
/// children someone else waits for (a test runner): it takes every status.
public enum ChildReaper {
    /// Reaps on a thread of its own for good; with no children, it looks again every 200 ms.
    public static func start() throws {
        try HostThread.detached(name: "reaper") {
            while true {
                var status: Int32 = 0
                if waitpid(-1, &status, 0) < 0 && errno == ECHILD { usleep(200_000) }
            }
        }
    }
}
