import EventLoop
import GRPCCore
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Collects the exit status of maitred's children and hands it to whoever waits for it.
///
/// As PID 1 (`.everyChild`), one thread reaps every child with `waitpid(-1)`, orphans re-parented
/// to init included, so no zombie is left; statuses of processes maitred launched go to their
/// waiters. Elsewhere (`.ownChildren`: tests, or maitred run by hand) only the children it
/// launched are waited for, one thread each, so other children of the process are left alone.
public final class ProcessReaper: Sendable {
    public enum Scope: Sendable {
        case everyChild
        case ownChildren
    }

    private struct State {
        /// Children launched through ``spawn(_:)`` whose status nobody has collected yet.
        var launched: Set<pid_t> = []
        var finished: [pid_t: Termination] = [:]
        var waiters: [pid_t: CheckedContinuation<Termination, Never>] = [:]
        /// Children whose status nobody will ask for.
        var detached: Set<pid_t> = []
    }

    private let scope: Scope
    private let state = Mutex(State())
    /// Wakes the `.everyChild` thread when it had no children and one was launched.
    private let childLaunched: EventFD

    public init(scope: Scope) throws {
        self.scope = scope
        childLaunched = try EventFD()
        if scope == .everyChild {
            try HostThread.detached(name: "reaper") { [self] in reapEveryChild() }
        }
    }

    /// Starts a child so that its status cannot be reaped before it is known as launched.
    func spawn(_ request: SpawnRequest) throws(RPCError) -> pid_t {
        try launch { () throws(RPCError) -> pid_t in try ProcessSpawner.spawn(request) }
    }

    /// Runs `start`, which starts one child and returns its PID, so that the child's status
    /// cannot be reaped before it is known as launched.
    func launch(_ start: () throws(RPCError) -> pid_t) throws(RPCError) -> pid_t {
        let pid = try state.withLock { state throws(RPCError) in
            let pid = try start()
            state.launched.insert(pid)
            return pid
        }
        switch scope {
        case .everyChild: childLaunched.signal()
        case .ownChildren:
            do {
                try HostThread.detached(name: "wait-\(pid)") { [self] in
                    var status: Int32 = 0
                    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
                    deliver(pid: pid, status: status)
                }
            } catch {
                kill(pid, SIGKILL)
                throw RPCError(code: .resourceExhausted, message: "no thread to wait for process \(pid): \(error)")
            }
        }
        return pid
    }

    /// Waits for a launched child to end.
    public func wait(for pid: pid_t) async -> Termination {
        await withCheckedContinuation { continuation in
            let done: Termination? = state.withLock { state in
                if let termination = state.finished.removeValue(forKey: pid) { return termination }
                state.waiters[pid] = continuation
                return nil
            }
            if let done { continuation.resume(returning: done) }
        }
    }

    /// Nobody will wait for this child: drop its status when it ends.
    public func detach(_ pid: pid_t) {
        state.withLock { state in
            if state.finished.removeValue(forKey: pid) == nil { state.detached.insert(pid) }
        }
    }

    /// Launched children that have not ended yet.
    public var running: Int { state.withLock { $0.launched.count } }

    private func deliver(pid: pid_t, status: Int32) {
        let termination = Termination(waitStatus: status)
        let waiter: CheckedContinuation<Termination, Never>? = state.withLock { state in
            guard state.launched.remove(pid) != nil else { return nil }  // an orphan: reaped, gone
            if state.detached.remove(pid) != nil { return nil }
            if let waiter = state.waiters.removeValue(forKey: pid) { return waiter }
            state.finished[pid] = termination
            return nil
        }
        waiter?.resume(returning: termination)
    }

    private func reapEveryChild() {
        while true {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, 0)
            if pid > 0 {
                deliver(pid: pid, status: status)
            } else if errno == ECHILD {
                // No children: sleep until one is launched.
                var wake = pollfd(fd: childLaunched.fd, events: Int16(POLLIN), revents: 0)
                _ = poll(&wake, 1, -1)
                childLaunched.drain()
            }
        }
    }
}
