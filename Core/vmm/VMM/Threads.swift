import EventLoop

#if canImport(Glibc)
    import Glibc
#endif

/// The signal that kicks a vCPU thread out of `KVM_RUN`; its handler does nothing, and it is
/// installed without SA_RESTART so the ioctl returns EINTR.
enum VCPUKickSignal {
    static let number = SIGRTMIN_VALUE

    static func install() {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in }
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0
        sigaction(number, &action, nil)
    }
}

/// SIGRTMIN is a function call in glibc, not a constant.
let SIGRTMIN_VALUE: Int32 = __libc_current_sigrtmin()

/// SIGTERM and SIGINT stop the VM cleanly: they are blocked in every thread and taken by one
/// thread with sigwait, so no handler runs in the middle of device code.
enum StopSignals {
    static func handle(_ onSignal: @escaping @Sendable () -> Void) throws(VMMError) {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGTERM)
        sigaddset(&set, SIGINT)
        // Threads started after this inherit the mask.
        pthread_sigmask(SIG_BLOCK, &set, nil)
        let blocked = set
        _ = try vmmThread(name: "signals") {
            var set = blocked
            var signal: Int32 = 0
            while sigwait(&set, &signal) == 0 {
                onSignal()
            }
        }
    }
}

/// Starts a thread, reporting failure as a ``VMMError``.
@discardableResult
func vmmThread(name: String, _ body: @escaping @Sendable () -> Void) throws(VMMError) -> HostThread {
    do { return try HostThread(name: name, body) } catch { throw VMMError("cannot start thread \(name): \(error)") }
}

extension HostThread {
    /// Interrupts a blocking system call (such as `KVM_RUN`) on this thread.
    func kick() { kill(VCPUKickSignal.number) }
}
