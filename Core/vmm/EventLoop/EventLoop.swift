import CLinux
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// One thread that waits on many descriptors with epoll and runs a handler for each that
/// becomes readable: the VMM's device thread, where queue notifications (ioeventfds) and
/// device backends are served off the vCPU threads, as crosvm's and Firecracker's device loops.
///
/// Handlers run one at a time on the loop's thread, so they must not block for long.
public final class EventLoop: Sendable {
    /// What a handler asks of the loop after it ran.
    public enum Next: Sendable {
        case keep
        /// Stop watching this descriptor.
        case remove
    }

    /// Which readiness a descriptor is watched for.
    public struct Interest: OptionSet, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let readable = Interest(rawValue: EPOLLIN.rawValue)
        public static let writable = Interest(rawValue: EPOLLOUT.rawValue)
        /// Report readiness once per change (each arrival of data, each freeing of room, the
        /// peer's end) instead of for as long as it lasts: the handler must remember it until
        /// a read or write comes up short, and the interest need not change as it does.
        public static let edgeTriggered = Interest(rawValue: EPOLLET.rawValue)
    }

    /// What a descriptor reported: readable and writable as asked, plus hang-up and error
    /// (reported whatever the interest; a handler should read or close).
    public struct Readiness: OptionSet, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let readable = Readiness(rawValue: EPOLLIN.rawValue)
        public static let writable = Readiness(rawValue: EPOLLOUT.rawValue)
        /// The peer is gone both ways (reported even without interest, for as long as the
        /// descriptor is watched: stop watching it).
        public static let hangUp = Readiness(rawValue: EPOLLHUP.rawValue)
        /// The peer will send no more (it may still read).
        public static let peerClosedWriting = Readiness(rawValue: EPOLLRDHUP.rawValue)
        public static let error = Readiness(rawValue: EPOLLERR.rawValue)
    }

    public typealias Handler = @Sendable () -> Next
    public typealias ReadinessHandler = @Sendable (Readiness) -> Next

    private let epoll: Int32
    private let wake: EventFD
    /// Each watched descriptor's handler and the generation it was added under. Events carry
    /// the generation too: an event dequeued for a descriptor that a handler earlier in the same
    /// batch closed, and whose number a new descriptor got since, must not reach the new handler.
    private let handlers = Mutex<(byFD: [Int32: (generation: UInt32, handler: ReadinessHandler)], next: UInt32)>(
        ([:], 1))
    private let stopping = Atomic<Bool>(false)
    private let thread = Mutex<HostThread?>(nil)
    /// The loop thread's pthread_t once it runs (0 before).
    private let loopThread = Atomic<UInt>(0)
    /// Rounds of signals run after a batch of events before the loop looks at its descriptors
    /// again (signals raised in the last round wait for that look).
    static let signalRounds = 4
    /// Signals raised on the loop's own thread, run after the current batch of handlers.
    private let raised = Mutex<[LoopSignal]>([])
    let name: String

    public init(name: String) throws(EventLoopError) {
        let epoll = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard epoll >= 0 else { throw .system("epoll_create1", errno: errno) }
        self.epoll = epoll
        self.name = name
        do { wake = try EventFD() } catch {
            close(epoll)
            throw error
        }
        try watch(wake.fd, generation: 0)
    }

    deinit { close(epoll) }

    /// Runs `handler` on the loop's thread whenever `fd` is readable (level-triggered), until it
    /// returns `.remove` or ``remove(_:)`` is called. The caller keeps `fd` open meanwhile.
    public func add(_ fd: Int32, handler: @escaping Handler) throws(EventLoopError) {
        try add(fd, interest: .readable) { _ in handler() }
    }

    /// Runs `handler` with what `fd` reported whenever it is ready for `interest` (or hung up or
    /// failed), until it returns `.remove` or ``remove(_:)`` is called.
    public func add(_ fd: Int32, interest: Interest, handler: @escaping ReadinessHandler) throws(EventLoopError) {
        let generation = handlers.withLock { state -> UInt32 in
            let generation = state.next
            state.next = state.next == UInt32.max ? 1 : state.next + 1
            state.byFD[fd] = (generation, handler)
            return generation
        }
        do { try watch(fd, interest: interest, generation: generation) } catch {
            handlers.withLock { _ = $0.byFD.removeValue(forKey: fd) }
            throw error
        }
    }

    /// Changes what `fd` is watched for. The kernel reports a full hang-up and errors whatever
    /// the interest; a peer's half-close (EPOLLRDHUP) only with `.readable`.
    public func setInterest(_ fd: Int32, _ interest: Interest) {
        guard let generation = handlers.withLock({ $0.byFD[fd]?.generation }) else { return }
        var event = epoll_event()
        event.events = Self.epollEvents(interest)
        event.data.u64 = Self.eventData(fd, generation)
        epoll_ctl(epoll, EPOLL_CTL_MOD, fd, &event)
    }

    /// Stops watching `fd`; its handler does not run again once this returns on the loop's
    /// thread, and at most once more (already dequeued) from another thread.
    public func remove(_ fd: Int32) {
        handlers.withLock { _ = $0.byFD.removeValue(forKey: fd) }
        epoll_ctl(epoll, EPOLL_CTL_DEL, fd, nil)
    }

    /// Starts the loop's thread.
    public func start() throws(EventLoopError) {
        let started = try HostThread(name: name) { [self] in run() }
        thread.withLock { $0 = started }
    }

    /// Ends the loop and waits for its thread.
    public func stop() {
        stopping.store(true, ordering: .sequentiallyConsistent)
        wake.signal()
        // Dropping the thread also drops its closure, which holds this loop.
        thread.withLock { thread in
            defer { thread = nil }
            return thread
        }?.join()
    }

    /// Whether the caller runs on the loop's thread.
    public var isCurrentThread: Bool {
        loopThread.load(ordering: .relaxed) == UInt(pthread_self())
    }

    /// Queues `signal` to fire after the current batch (called on the loop's thread).
    func runAfterBatch(_ signal: LoopSignal) {
        raised.withLock { $0.append(signal) }
    }

    static func epollEvents(_ interest: Interest) -> UInt32 {
        interest.rawValue | (interest.contains(.readable) ? EPOLLRDHUP.rawValue : 0)
    }

    static func eventData(_ fd: Int32, _ generation: UInt32) -> UInt64 {
        UInt64(generation) << 32 | UInt64(UInt32(bitPattern: fd))
    }

    private func watch(_ fd: Int32, interest: Interest = .readable, generation: UInt32) throws(EventLoopError) {
        var event = epoll_event()
        event.events = Self.epollEvents(interest)
        event.data.u64 = Self.eventData(fd, generation)
        guard epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &event) == 0 else {
            throw .system("epoll_ctl(ADD, fd \(fd))", errno: errno)
        }
    }

    private func run() {
        loopThread.store(UInt(pthread_self()), ordering: .relaxed)
        var events = [epoll_event](repeating: epoll_event(), count: 32)
        var signals: [LoopSignal] = []
        while !stopping.load(ordering: .sequentiallyConsistent) {
            // Signals still queued (raised by the last ones run) only look for ready descriptors.
            let timeout: Int32 = raised.withLock { $0.isEmpty } ? -1 : 0
            let count = events.withUnsafeMutableBufferPointer {
                epoll_wait(epoll, $0.baseAddress, Int32($0.count), timeout)
            }
            if count < 0 {
                if errno == EINTR { continue }
                return
            }
            for event in events[0..<Int(count)] {
                let fd = Int32(bitPattern: UInt32(truncatingIfNeeded: event.data.u64))
                let generation = UInt32(truncatingIfNeeded: event.data.u64 >> 32)
                if generation == 0 && fd == wake.fd {
                    wake.drain()
                    continue
                }
                guard let watched = handlers.withLock({ $0.byFD[fd] }), watched.generation == generation else {
                    continue
                }
                if case .remove = watched.handler(Readiness(rawValue: event.events)) { remove(fd) }
            }
            // The signals the handlers raised, then those these raise, for a few rounds: work
            // that one signal starts (an interrupt for the buffers a receive pass filled) is done
            // before the loop waits again, yet a signal that keeps raising itself cannot keep
            // ready descriptors waiting for long.
            for _ in 0..<Self.signalRounds {
                raised.withLock { swap(&$0, &signals) }
                guard !signals.isEmpty else { break }
                for signal in signals { signal.fire() }
                signals.removeAll(keepingCapacity: true)
            }
        }
    }
}
