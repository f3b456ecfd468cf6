#if canImport(Glibc)
    import Glibc
#endif

/// One decoded request waiting for a worker.
struct P9Job: Sendable {
    let tag: UInt16
    let request: P9Request
}

/// The bounded hand-off between a session's reader and its workers: at most `limit` requests
/// are in flight (queued or running); the reader waits for a free slot before it reads the
/// next frame, so a session holds at most `limit` request buffers of msize bytes.
final class P9RequestQueue: @unchecked Sendable {
    let limit: Int
    // A POSIX mutex and condition variable (heap-allocated: they must not move). Every field
    // below is touched only with `mutex` held.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let changed = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var jobs: [P9Job] = []
    private var active = 0
    private var closed = false

    init(limit: Int) {
        self.limit = max(1, limit)
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(changed, nil)
    }

    deinit {
        pthread_cond_destroy(changed)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        changed.deallocate()
    }

    private func locked<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return body()
    }

    /// Waits until fewer than `limit` requests are in flight and takes a slot; false once closed.
    func acquireSlot() -> Bool {
        locked {
            while !closed && active >= limit { pthread_cond_wait(changed, mutex) }
            if closed { return false }
            active += 1
            return true
        }
    }

    /// Gives back a slot (a request handled without a worker, or one a worker finished).
    func releaseSlot() {
        locked {
            active -= 1
            pthread_cond_broadcast(changed)
        }
    }

    /// Queues a request for a worker; its slot was taken with ``acquireSlot()``.
    func push(_ job: P9Job) {
        locked {
            jobs.append(job)
            pthread_cond_broadcast(changed)
        }
    }

    /// The next request, waiting for one; nil once the queue is closed.
    func pop() -> P9Job? {
        locked {
            while !closed && jobs.isEmpty { pthread_cond_wait(changed, mutex) }
            if closed { return nil }
            return jobs.removeFirst()
        }
    }

    /// Whether the caller's slot is the only one taken and nothing waits for a worker: a
    /// request handled at once keeps the order, and no other waits behind it.
    var isAlone: Bool { locked { active == 1 && jobs.isEmpty } }

    /// Waits until no request other than `except` slots is in flight.
    func waitIdle(except: Int = 0) {
        locked {
            while !closed && active > except { pthread_cond_wait(changed, mutex) }
        }
    }

    /// Wakes everyone and drops queued requests; running ones finish.
    func close() {
        locked {
            closed = true
            active -= jobs.count
            jobs.removeAll()
            pthread_cond_broadcast(changed)
        }
    }
}
