import CLinux

#if canImport(Glibc)
    import Glibc
#endif

/// A joinable POSIX thread running a closure: vCPUs and device loops need real threads of their
/// own (not tasks on a shared pool), since they block in `KVM_RUN` or `epoll_wait`.
public final class HostThread: @unchecked Sendable {
    private var handle = pthread_t()
    private let body: @Sendable () -> Void

    /// Starts `body` on a new thread called `name` (as `ps -L` shows it, cut to 15 bytes).
    public init(name: String, _ body: @escaping @Sendable () -> Void) throws(EventLoopError) {
        let shortName = String(name.utf8.prefix(15)) ?? "vmm"
        self.body = {
            clinux_set_thread_name(shortName)
            body()
        }
        let box = Unmanaged.passRetained(self)
        let result = pthread_create(
            &handle, nil,
            { raw in
                guard let raw else { return nil }
                let thread = Unmanaged<HostThread>.fromOpaque(raw).takeRetainedValue()
                thread.body()
                return nil
            }, box.toOpaque())
        guard result == 0 else {
            box.release()
            throw .system("pthread_create for thread \(name)", errno: result)
        }
    }

    /// Sends `signal` to this thread (used to interrupt a blocking call such as `KVM_RUN`).
    public func kill(_ signal: Int32) { pthread_kill(handle, signal) }

    /// Waits for the thread to end.
    public func join() { pthread_join(handle, nil) }

    /// Starts `body` on a thread nobody joins: its resources go back when it ends.
    public static func detached(name: String, _ body: @escaping @Sendable () -> Void) throws(EventLoopError) {
        let thread = try HostThread(name: name, body)
        pthread_detach(thread.handle)
    }
}
