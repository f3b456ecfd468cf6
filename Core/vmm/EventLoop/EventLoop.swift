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

    public typealias Handler = @Sendable () -> Next

    private let epoll: Int32
    private let wake: EventFD
    private let handlers = Mutex<[Int32: Handler]>([:])
    private let stopping = Atomic<Bool>(false)
    private let thread = Mutex<HostThread?>(nil)
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
        try watch(wake.fd)
    }

    deinit { close(epoll) }

    /// Runs `handler` on the loop's thread whenever `fd` is readable (level-triggered), until it
    /// returns `.remove` or ``remove(_:)`` is called. The caller keeps `fd` open meanwhile.
    public func add(_ fd: Int32, handler: @escaping Handler) throws(EventLoopError) {
        handlers.withLock { $0[fd] = handler }
        do { try watch(fd) } catch {
            handlers.withLock { _ = $0.removeValue(forKey: fd) }
            throw error
        }
    }

    /// Stops watching `fd`; its handler does not run again once this returns on the loop's
    /// thread, and at most once more (already dequeued) from another thread.
    public func remove(_ fd: Int32) {
        handlers.withLock { _ = $0.removeValue(forKey: fd) }
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
        thread.withLock { $0 }?.join()
    }

    private func watch(_ fd: Int32) throws(EventLoopError) {
        var event = epoll_event()
        event.events = EPOLLIN.rawValue
        event.data.fd = fd
        guard epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &event) == 0 else {
            throw .system("epoll_ctl(ADD, fd \(fd))", errno: errno)
        }
    }

    private func run() {
        var events = [epoll_event](repeating: epoll_event(), count: 32)
        while !stopping.load(ordering: .sequentiallyConsistent) {
            let count = events.withUnsafeMutableBufferPointer {
                epoll_wait(epoll, $0.baseAddress, Int32($0.count), -1)
            }
            if count < 0 {
                if errno == EINTR { continue }
                return
            }
            for event in events[0..<Int(count)] {
                let fd = event.data.fd
                if fd == wake.fd {
                    wake.drain()
                    continue
                }
                guard let handler = handlers.withLock({ $0[fd] }) else { continue }
                if case .remove = handler() { remove(fd) }
            }
        }
    }
}
