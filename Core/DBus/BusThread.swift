import CSystemd
import EventLoop
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Which bus a ``DBusConnection`` talks to.
public enum DBusBus: Sendable, Hashable {
    /// The system bus (where the daemons live).
    case system
    /// The calling user's session bus.
    case user
    /// A bus at an address, for example `unix:path=/tmp/test/bus` (a private dbus-daemon).
    case address(String)
}

/// The thread that owns one sd_bus: the only thread that ever touches the `sd_bus*`, its
/// messages and slots. Other threads hand it work (`submit`) and wake it through an eventfd;
/// it polls the bus's descriptor with sd-bus's events and timeout, and the eventfd.
///
/// Everything below `MARK: - Bus-thread state` is read and written on that thread only.
final class BusThread: @unchecked Sendable {
    typealias Job = @Sendable (OpaquePointer) -> Void

    private struct Queue {
        var jobs: [Job] = []
        var closing = false
        /// No more jobs are accepted (the loop is shutting down or gone).
        var closed = false
        /// The loop has ended and the bus is freed.
        var finished = false
        var closeWaiters: [CheckedContinuation<Void, Never>] = []
    }

    private let queue = Mutex(Queue())
    private let wake: EventFD

    // MARK: - Bus-thread state

    private var bus: OpaquePointer?
    private var nextID: UInt64 = 1
    /// Outgoing calls awaiting their reply.
    private var pendingCalls: [UInt64: PendingCall] = [:]
    /// Incoming calls whose handler has not answered yet (the message is ref'd).
    private var incomingCalls: [UInt64: IncomingCall] = [:]
    /// Exported interfaces (their vtables and slots).
    private var objects: [UInt64: ExportedObject] = [:]
    /// Signal subscriptions.
    private var subscriptions: [UInt64: Subscription] = [:]

    init() throws(DBusError) {
        do {
            wake = try EventFD()
        } catch {
            throw .failed("eventfd for the bus thread: \(error)")
        }
    }

    // MARK: - Submitting work

    /// Runs `job` on the bus thread with the bus; false when the connection is closed.
    @discardableResult
    func submit(_ job: @escaping Job) -> Bool {
        let accepted = queue.withLock { state -> Bool in
            guard !state.closed else { return false }
            state.jobs.append(job)
            return true
        }
        if accepted { wake.signal() }
        return accepted
    }

    /// Runs `body` on the bus thread and returns its result; Disconnected when closed.
    func perform<T: Sendable>(_ body: @escaping @Sendable (OpaquePointer) throws(DBusError) -> T)
        async throws(DBusError)
        -> T
    {
        let result: Result<T, DBusError> = await withCheckedContinuation { continuation in
            let accepted = submit { bus in
                do throws(DBusError) {
                    continuation.resume(returning: .success(try body(bus)))
                } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
            if !accepted { continuation.resume(returning: .failure(.disconnected("the D-Bus connection is closed"))) }
        }
        return try result.get()
    }

    /// Asks the loop to shut down (pending work first) without waiting.
    func requestClose() {
        queue.withLock { $0.closing = true }
        wake.signal()
    }

    /// Asks the loop to shut down and waits until the bus is flushed and freed.
    func close() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = queue.withLock { state -> Bool in
                if state.finished { return true }
                state.closing = true
                state.closeWaiters.append(continuation)
                return false
            }
            if done { continuation.resume() } else { wake.signal() }
        }
    }

    var isClosed: Bool { queue.withLock { $0.closed } }

    // MARK: - The loop

    /// Opens the bus, reports the outcome (the unique name) to `opened`, then serves the bus
    /// until closed or disconnected.
    func run(_ kind: DBusBus, opened: (Result<String, DBusError>) -> Void) {
        let bus: OpaquePointer
        do {
            bus = try Self.open(kind)
        } catch {
            queue.withLock {
                $0.closed = true
                $0.finished = true
            }
            opened(.failure(error))
            return
        }
        self.bus = bus
        var namePointer: UnsafePointer<CChar>? = nil
        let r = sd_bus_get_unique_name(bus, &namePointer)
        guard r >= 0, let namePointer else {
            self.bus = nil
            sd_bus_flush_close_unref(bus)
            queue.withLock {
                $0.closed = true
                $0.finished = true
            }
            opened(.failure(.system("connecting to the bus", r)))
            return
        }
        opened(.success(String(cString: namePointer)))
        loop(bus)
        shutdown(bus)
    }

    private static func open(_ kind: DBusBus) throws(DBusError) -> OpaquePointer {
        var bus: OpaquePointer? = nil
        switch kind {
        case .system:
            let r = sd_bus_open_system(&bus)
            if r < 0 { throw .system("opening the system bus", r) }
        case .user:
            let r = sd_bus_open_user(&bus)
            if r < 0 { throw .system("opening the user bus", r) }
        case .address(let address):
            var r = sd_bus_new(&bus)
            if r < 0 { throw .system("sd_bus_new", r) }
            r = sd_bus_set_address(bus, address)
            if r >= 0 { r = sd_bus_set_bus_client(bus, 1) }
            if r >= 0 { r = sd_bus_start(bus) }
            if r < 0 {
                sd_bus_unref(bus)
                throw .system("connecting to \(address)", r)
            }
        }
        guard let bus else { throw .failed("sd-bus returned no bus") }
        return bus
    }

    private func loop(_ bus: OpaquePointer) {
        while true {
            let (jobs, closing) = queue.withLock { state in
                defer { state.jobs.removeAll() }
                return (state.jobs, state.closing)
            }
            for job in jobs { job(bus) }
            if closing { return }

            // Dispatch what sd-bus has; a busy bus yields to queued work every 64 messages.
            var busy = false
            var processed = 0
            while true {
                let r = sd_bus_process(bus, nil)
                if r < 0 { return }  // disconnected: sd-bus already failed its own pending calls
                if r == 0 { break }
                processed += 1
                if processed == 64 {
                    busy = true
                    break
                }
            }

            let fd = sd_bus_get_fd(bus)
            let events = sd_bus_get_events(bus)
            if fd < 0 || events < 0 { return }
            var deadline: UInt64 = 0
            var timeout: Int32 = -1
            if sd_bus_get_timeout(bus, &deadline) >= 0, deadline != UInt64.max {
                var now = timespec()
                clock_gettime(CLOCK_MONOTONIC, &now)
                let nowUsec = UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1000
                timeout = deadline <= nowUsec ? 0 : Int32(clamping: (deadline - nowUsec + 999) / 1000)
            }
            if busy { timeout = 0 }
            var fds = [
                pollfd(fd: fd, events: Int16(truncatingIfNeeded: events), revents: 0),
                pollfd(fd: wake.fd, events: Int16(POLLIN), revents: 0),
            ]
            let ready = poll(&fds, 2, timeout)
            if ready < 0 && errno != EINTR { return }
            if fds[1].revents != 0 { wake.drain() }
        }
    }

    /// Ends everything the connection still holds, on the bus thread, then frees the bus.
    private func shutdown(_ bus: OpaquePointer) {
        // Jobs queued before the door closed still run: they may be replies or signals.
        let late = queue.withLock { state in
            state.closed = true
            defer { state.jobs.removeAll() }
            return state.jobs
        }
        for job in late { job(bus) }

        for id in incomingCalls.keys.sorted() {
            finishIncoming(
                id,
                .failure(.failed("the service closed its D-Bus connection before answering")),
                expected: nil)
        }
        for (_, call) in pendingCalls {
            sd_bus_slot_unref(call.slot)
            call.complete(.failure(.disconnected("the D-Bus connection closed before the reply came")))
        }
        pendingCalls.removeAll()
        for (_, subscription) in subscriptions {
            sd_bus_slot_unref(subscription.slot)
            subscription.end(.disconnected("the D-Bus connection closed"))
        }
        subscriptions.removeAll()
        for (_, object) in objects { sd_bus_slot_unref(object.slot) }
        objects.removeAll()

        self.bus = nil
        sd_bus_flush_close_unref(bus)
        let waiters = queue.withLock { state in
            state.finished = true
            defer { state.closeWaiters.removeAll() }
            return state.closeWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    // MARK: - Bus-thread bookkeeping

    func makeID() -> UInt64 {
        defer { nextID += 1 }
        return nextID
    }

    func addPendingCall(_ call: PendingCall) { pendingCalls[call.id] = call }

    /// The reply (or sd-bus's synthesized timeout/disconnect error) for an outgoing call.
    func completeCall(_ id: UInt64, reply: OpaquePointer) {
        guard let call = pendingCalls.removeValue(forKey: id) else { return }
        sd_bus_slot_unref(call.slot)
        call.complete(Self.result(of: reply))
    }

    /// Drops an outgoing call (its task was cancelled); the reply, if any, is ignored.
    func cancelCall(_ id: UInt64) {
        guard let call = pendingCalls.removeValue(forKey: id) else { return }
        sd_bus_slot_unref(call.slot)
        call.complete(.failure(.failed("the call was cancelled")))
    }

    /// A reply's values, or its error.
    static func result(of reply: OpaquePointer) -> Result<[DBusValue], DBusError> {
        if sd_bus_message_is_method_error(reply, nil) > 0 {
            guard let error = sd_bus_message_get_error(reply) else { return .failure(.failed("unnamed error")) }
            let name = error.pointee.name.map { String(cString: $0) } ?? DBusError.failedName
            let message = error.pointee.message.map { String(cString: $0) } ?? ""
            return .failure(DBusError(name: name, message: message))
        }
        do {
            return .success(try DBusValue.readAll(from: reply))
        } catch {
            return .failure(error)
        }
    }

    func addIncoming(_ call: IncomingCall) -> UInt64 {
        let id = makeID()
        incomingCalls[id] = call
        return id
    }

    func setIncomingTask(_ id: UInt64, _ task: Task<Void, Never>) {
        // The call may already be answered (a handler that finished first), or the bus gone.
        incomingCalls[id]?.task = task
    }

    /// Answers an incoming call with `outcome` (a reply of signature `expected`, or an error)
    /// and releases its message. Does nothing if it was already answered.
    func finishIncoming(_ id: UInt64, _ outcome: Result<[DBusValue], DBusError>, expected: String?) {
        guard let call = incomingCalls.removeValue(forKey: id) else { return }
        defer { sd_bus_message_unref(call.message) }
        call.task?.cancel()
        var outcome = outcome
        if case .success(let values) = outcome, let expected, DBusValue.signature(of: values) != expected {
            outcome = .failure(
                .failed(
                    "\(call.member) returned values of signature '\(DBusValue.signature(of: values))', "
                        + "expected '\(expected)'"))
        }
        switch outcome {
        case .success(let values):
            var reply: OpaquePointer? = nil
            var r = sd_bus_message_new_method_return(call.message, &reply)
            if r >= 0, let reply {
                defer { sd_bus_message_unref(reply) }
                do {
                    try DBusValue.append(values, to: reply)
                    r = sd_bus_send(nil, reply, nil)
                    if r >= 0 { return }
                    Self.replyError(call.message, .system("sending the reply to \(call.member)", r))
                } catch {
                    Self.replyError(call.message, .failed("\(call.member) returned a bad value: \(error.message)"))
                }
            }
        case .failure(let error):
            Self.replyError(call.message, error)
        }
    }

    /// Sends `error` as the reply to `call`; falls back to Failed if sd-bus refuses the name.
    static func replyError(_ call: OpaquePointer, _ error: DBusError) {
        var busError = sd_bus_error()
        defer { sd_bus_error_free(&busError) }
        sd_bus_error_set(&busError, error.name, error.message)
        if sd_bus_reply_method_error(call, &busError) >= 0 { return }
        var fallback = sd_bus_error()
        defer { sd_bus_error_free(&fallback) }
        sd_bus_error_set(&fallback, DBusError.failedName, "\(error.name): \(error.message)")
        sd_bus_reply_method_error(call, &fallback)
    }

    func addObject(_ object: ExportedObject) { objects[object.id] = object }

    func removeObject(_ id: UInt64) {
        guard let object = objects.removeValue(forKey: id) else { return }
        sd_bus_slot_unref(object.slot)
    }

    func addSubscription(_ subscription: Subscription) { subscriptions[subscription.id] = subscription }

    func removeSubscription(_ id: UInt64, _ error: DBusError? = nil) {
        guard let subscription = subscriptions.removeValue(forKey: id) else { return }
        sd_bus_slot_unref(subscription.slot)
        subscription.end(error)
    }
}

// MARK: - Records kept by the bus thread

/// An outgoing call awaiting its reply. `complete` runs once.
final class PendingCall: @unchecked Sendable {
    let id: UInt64
    unowned let thread: BusThread
    var slot: OpaquePointer?
    private var continuation: CheckedContinuation<Result<[DBusValue], DBusError>, Never>?

    init(id: UInt64, thread: BusThread, continuation: CheckedContinuation<Result<[DBusValue], DBusError>, Never>) {
        self.id = id
        self.thread = thread
        self.continuation = continuation
    }

    func complete(_ result: Result<[DBusValue], DBusError>) {
        continuation?.resume(returning: result)
        continuation = nil
    }
}

/// An incoming method call whose handler runs as a task; `message` holds a reference.
struct IncomingCall {
    let message: OpaquePointer
    let member: String
    var task: Task<Void, Never>?
}
