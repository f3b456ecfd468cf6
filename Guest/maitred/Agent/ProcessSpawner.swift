import CGuestSystem
import CLinux
import GRPCCore

#if canImport(Glibc)
    import Glibc
#endif

/// A program to start: what it runs, with which environment, where, and on which descriptors.
struct SpawnRequest {
    var argv: [String]
    /// The child's whole environment.
    var environment: [String: String]
    var workingDirectory: String = ""
    /// Descriptors that become the child's 0, 1 and 2 (ignored with `terminal`).
    var stdin: Int32 = -1
    var stdout: Int32 = -1
    var stderr: Int32 = -1
    /// A PTY slave's path: the child starts a new session and the terminal becomes its 0, 1, 2
    /// and controlling terminal.
    var terminal: String? = nil
}

/// Starts processes with posix_spawn (never fork: maitred is multithreaded).
enum ProcessSpawner {
    /// The environment a process gets when the request names none.
    static let defaultEnvironment = [
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "TERM": "linux",
    ]

    /// Starts the program; throws a gRPC error naming what failed (NOT_FOUND for a missing program).
    static func spawn(_ request: SpawnRequest) throws(RPCError) -> pid_t {
        guard let name = request.argv.first, !name.isEmpty else {
            throw AgentError.invalid("argv is empty: name a program to run")
        }
        let program = try resolve(name, path: request.environment["PATH"] ?? defaultEnvironment["PATH"] ?? "")

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }

        var sessionFlag: Int16 = 0

        if let terminal = request.terminal {
            // glibc performs setsid before the file actions, so opening the terminal without
            // O_NOCTTY makes it the new session's controlling terminal.
            sessionFlag = cgs_spawn_setsid_flag()
            posix_spawn_file_actions_addopen(&actions, 0, terminal, O_RDWR, 0)
            posix_spawn_file_actions_adddup2(&actions, 0, 1)
            posix_spawn_file_actions_adddup2(&actions, 0, 2)
        } else {
            for (source, target) in [(request.stdin, Int32(0)), (request.stdout, 1), (request.stderr, 2)] {
                guard source >= 0 else { throw AgentError.invalid("internal: no descriptor for fd \(target)") }
                posix_spawn_file_actions_adddup2(&actions, source, target)
            }
        }
        if !request.workingDirectory.isEmpty {
            let result = cgs_spawn_add_chdir(&actions, request.workingDirectory)
            guard result == 0 else {
                throw AgentError.system("working directory \(request.workingDirectory)", errno: result)
            }
        }
        // maitred's own signal mask and handlers are not the child's business.
        clinux_spawnattr_reset_signals(&attributes, sessionFlag)

        let argv = request.argv.map { strdup($0) } + [nil]
        let environment = request.environment.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            environment.forEach { free($0) }
        }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, program, &actions, &attributes, argv, environment)
        guard result == 0 else {
            if result == ENOENT && !request.workingDirectory.isEmpty {
                throw AgentError.system("starting \(program) in \(request.workingDirectory)", errno: result)
            }
            throw AgentError.system("starting \(program)", errno: result)
        }
        return pid
    }

    /// The program's path: as given when it has a slash, else the first executable match in
    /// `path` (the child's PATH, not maitred's).
    static func resolve(_ name: String, path: String) throws(RPCError) -> String {
        if name.contains("/") {
            guard access(name, X_OK) == 0 else { throw AgentError.system("program \(name)", errno: errno) }
            return name
        }
        for directory in path.split(separator: ":") where !directory.isEmpty {
            let candidate = "\(directory)/\(name)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        throw RPCError(code: .notFound, message: "no program named \(name) in PATH \(path)")
    }
}
