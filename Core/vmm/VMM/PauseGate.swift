#if canImport(Glibc)
    import Glibc
#endif

/// Where vCPU threads park while the VM is paused: a condition variable with a count of parked
/// threads, so that `pause()` returns only once every vCPU has left the guest.
final class PauseGate: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    private var condition = pthread_cond_t()
    private var paused = false
    private var parked = 0
    private var released = false

    init() {
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&condition, nil)
    }

    deinit {
        pthread_cond_destroy(&condition)
        pthread_mutex_destroy(&mutex)
    }

    var isPaused: Bool { withLock { paused } }

    /// Called by a vCPU thread between runs: blocks while paused (unless released for shutdown).
    func parkIfPaused() {
        pthread_mutex_lock(&mutex)
        if paused && !released {
            parked += 1
            pthread_cond_broadcast(&condition)
            while paused && !released { pthread_cond_wait(&condition, &mutex) }
            parked -= 1
        }
        pthread_mutex_unlock(&mutex)
    }

    /// Sets the paused flag; `kick` must make running vCPUs return to ``parkIfPaused()``.
    /// Waits until `vcpus` threads are parked (or the VM is shutting down).
    func pause(vcpus: Int, kick: () -> Void) {
        withLock { paused = true }
        kick()
        pthread_mutex_lock(&mutex)
        while parked < vcpus && !released { pthread_cond_wait(&condition, &mutex) }
        pthread_mutex_unlock(&mutex)
    }

    func resume() {
        withLock { paused = false }
        pthread_cond_broadcast(&condition)
    }

    /// Lets every parked thread go for good (the VM is stopping).
    func release() {
        withLock { released = true }
        pthread_cond_broadcast(&condition)
    }

    private func withLock<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return body()
    }
}
