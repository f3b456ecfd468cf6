import Synchronization

/// A request to run some work on an ``EventLoop``'s thread, raised from any thread.
///
/// Raised from another thread it writes an eventfd, which wakes the loop. Raised on the loop's
/// own thread (a handler asking for more work, as a device does when one queue's packets let
/// another move) it costs no system call: the work runs once the handlers of the current batch
/// have run, before the loop waits again. That saves three system calls (write, wait, read) on a
/// path that, in a nested or emulated host, is paid for in latency on every packet round trip.
public final class LoopSignal: Sendable {
    let event: EventFD
    /// Queued on the loop's own thread and not yet run: a second raise adds nothing.
    private let pending = Atomic<Bool>(false)
    private let attachment = Mutex<Attachment?>(nil)

    /// The loop and the work, boxed: a closure kept in generic storage would be re-wrapped
    /// (reabstracted) on every load, on a path that runs per packet.
    private final class Attachment: Sendable {
        let loop: EventLoop
        let work: @Sendable () -> Void
        init(loop: EventLoop, work: @escaping @Sendable () -> Void) {
            self.loop = loop
            self.work = work
        }
    }

    public init() throws(EventLoopError) {
        event = try EventFD()
    }

    /// Asks for the work to run on the loop's thread. Raises before ``EventLoop/add(_:work:)``
    /// are kept and run once it is attached and the loop runs.
    public func raise() {
        guard let loop = attachment.withLock({ $0?.loop }), loop.isCurrentThread else {
            return event.signal()
        }
        if !pending.exchange(true, ordering: .acquiringAndReleasing) { loop.runAfterBatch(self) }
    }

    /// Takes the count of raises that went through the eventfd and were not yet served (for
    /// tests: a raise on the loop's own thread adds none).
    public func takeEventfdWakeups() -> UInt64 { event.drain() }

    func attach(to loop: EventLoop, work: @escaping @Sendable () -> Void) {
        attachment.withLock { $0 = Attachment(loop: loop, work: work) }
    }

    /// Runs the work (on the loop's thread); a raise during it queues it again.
    func fire() {
        pending.store(false, ordering: .releasing)
        attachment.withLock { $0 }?.work()
    }
}

extension EventLoop {
    /// Runs `work` on the loop's thread each time `signal` is raised (at most once per batch of
    /// raises on the loop's own thread). The caller keeps `signal` alive meanwhile.
    public func add(_ signal: LoopSignal, work: @escaping @Sendable () -> Void) throws(EventLoopError) {
        signal.attach(to: self, work: work)
        try add(signal.event.fd) { [weak signal] in
            guard let signal else { return .remove }
            signal.event.drain()
            signal.fire()
            return .keep
        }
    }
}
