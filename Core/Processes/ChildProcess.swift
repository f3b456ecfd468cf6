import CLinux
import EventLoop
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A process a daemon runs or watches (a VMM, a 9P server), held through a pidfd: signals reach exactly that
/// process even after its PID is reused, and its exit is noticed at once, not by polling.
public final class ChildProcess: Sendable {
    /// How a process ended.
    public enum Termination: Sendable, Equatable, CustomStringConvertible {
        case exited(Int32)
        case signaled(Int32)
        /// A process the daemon did not start (re-adopted after a restart) ended; only its
        /// parent learns the status.
        case ended

        public var description: String {
            switch self {
            case .exited(let code): return "exited with status \(code)"
            case .signaled(let signal): return "killed by signal \(signal)"
            case .ended: return "ended"
            }
        }
    }

    public let pid: pid_t
    private let pidfd: Int32
    private let outcome = Mutex<(termination: Termination?, waiters: [CheckedContinuation<Termination, Never>])>(
        (nil, []))

    private init(pid: pid_t, pidfd: Int32, isChild: Bool) throws(ProcessError) {
        self.pid = pid
        self.pidfd = pidfd
        do {
            try HostThread.detached(name: "wait-\(pid)") { [self] in watch(isChild: isChild) }
        } catch {
            throw .system("starting the thread that waits for process \(pid)", EAGAIN)
        }
    }

    deinit { close(pidfd) }

    // MARK: - Starting and adopting

    /// Starts `executable` with `arguments` (argv[0] is the executable's path). `descriptors`
    /// become the child's 3, 4, ... in order; stdin is /dev/null; stdout and stderr are
    /// appended to `output` when given, inherited otherwise. The child starts with no signal
    /// blocked and default dispositions. posix_spawn, not fork: the daemon is multithreaded.
    public static func spawn(executable: String, arguments: [String], descriptors: [Int32] = [], output: String? = nil)
        throws(ProcessError) -> ChildProcess
    {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        clinux_spawnattr_reset_signals(&attributes, 0)

        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        if let output {
            posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_APPEND, 0o640)
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        }
        // Two passes, so that a descriptor numbered 3+ that is itself a target is not
        // overwritten before it was copied: first far out of the way, then into place.
        let parking = max(1000, (descriptors.max() ?? 0) + 1)
        for (i, fd) in descriptors.enumerated() { posix_spawn_file_actions_adddup2(&actions, fd, parking + Int32(i)) }
        for i in descriptors.indices {
            posix_spawn_file_actions_adddup2(&actions, parking + Int32(i), 3 + Int32(i))
            posix_spawn_file_actions_addclose(&actions, parking + Int32(i))
        }

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for arg in argv { free(arg) } }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, executable, &actions, &attributes, argv, environ)
        guard result == 0 else { throw .system("starting \(executable)", result) }
        let pidfd = clinux_pidfd_open(pid)
        guard pidfd >= 0 else {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            throw .system("pidfd_open for \(executable) (pid \(pid))", -pidfd)
        }
        return try ChildProcess(pid: pid, pidfd: pidfd, isChild: true)
    }

    /// Watches a process the daemon did not start (a VMM that outlived a concierge restart).
    public static func adopt(pid: pid_t) throws(ProcessError) -> ChildProcess {
        let pidfd = clinux_pidfd_open(pid)
        guard pidfd >= 0 else { throw .system("pidfd_open for pid \(pid)", -pidfd) }
        return try ChildProcess(pid: pid, pidfd: pidfd, isChild: false)
    }

    // MARK: - Signals and exit

    /// Sends `signal`; false when the process has already ended.
    @discardableResult
    public func signal(_ signal: Int32) -> Bool {
        clinux_pidfd_send_signal(pidfd, signal) == 0
    }

    /// How it ended, once it has.
    public var termination: Termination? { outcome.withLock { $0.termination } }

    /// Waits until the process ends.
    public func terminated() async -> Termination {
        await withCheckedContinuation { continuation in
            let known = outcome.withLock { state -> Termination? in
                if let termination = state.termination { return termination }
                state.waiters.append(continuation)
                return nil
            }
            if let known { continuation.resume(returning: known) }
        }
    }

    /// Waits at most `seconds` (or until the task is cancelled) for the process to end; nil if
    /// it still runs.
    public func terminated(within seconds: Double) async -> Termination? {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while ContinuousClock.now < deadline, !Task.isCancelled {
            if let termination { return termination }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return termination
    }

    /// On its own thread: the pidfd turns readable when the process ends; then reap it (if it
    /// is ours) and tell the waiters.
    private func watch(isChild: Bool) {
        var entry = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
        while poll(&entry, 1, -1) < 0 && errno == EINTR {}
        var result = Termination.ended
        if isChild {
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            // WIFEXITED / WEXITSTATUS / WTERMSIG, which Swift does not import (macros).
            result = status & 0x7F == 0 ? .exited((status >> 8) & 0xFF) : .signaled(status & 0x7F)
        }
        let waiters = outcome.withLock { state in
            state.termination = result
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(returning: result) }
    }
}

/// Why a process could not be started or watched.
public enum ProcessError: Error, Equatable, CustomStringConvertible {
    case system(String, Int32)

    public var description: String {
        switch self {
        case .system(let what, let code): return "\(what): \(String(cString: strerror(code)))"
        }
    }
}
