import CSystemd
import Synchronization

/// A signal received from the bus.
public struct DBusSignal: Sendable, Hashable {
    /// The sender's unique name (`:1.7`).
    public var sender: String
    public var path: String
    public var interface: String
    public var member: String
    public var arguments: [DBusValue]

    /// Argument `index` as `T`; InvalidArgs when missing or of another type.
    public func argument<T: DBusConvertible>(_ index: Int, as type: T.Type = T.self) throws(DBusError) -> T {
        try DBusMethodCall.argument(arguments, index, as: type)
    }
}

/// A match rule selecting signals, as `AddMatch` takes it:
/// `type='signal',sender='org.vmtools.Concierge',interface='org.vmtools.Concierge',member='VmStarted'`.
public struct DBusMatchRule: Sendable, Hashable, CustomStringConvertible {
    public var sender: String?
    public var path: String?
    public var interface: String?
    public var member: String?

    /// Signals matching every field given (nil matches anything).
    public init(sender: String? = nil, path: String? = nil, interface: String? = nil, member: String? = nil) {
        self.sender = sender
        self.path = path
        self.interface = interface
        self.member = member
    }

    /// The rule's text.
    public var description: String {
        var parts = ["type='signal'"]
        for (key, value) in [("sender", sender), ("path", path), ("interface", interface), ("member", member)] {
            // Inside quotes only the quote itself needs escaping: close, escaped quote, reopen.
            if let value {
                parts.append(
                    "\(key)='\(value.split(separator: "'", omittingEmptySubsequences: false).joined(separator: "'\\''"))'"
                )
            }
        }
        return parts.joined(separator: ",")
    }
}

/// An active signal subscription; ``cancel()`` (or dropping the connection) ends it.
public final class DBusSubscription: Sendable {
    private let id: UInt64
    private let thread: BusThread

    init(id: UInt64, thread: BusThread) {
        self.id = id
        self.thread = thread
    }

    /// Removes the match; the handler is not called afterwards (except for a call already running).
    public func cancel() {
        let (id, thread) = (self.id, self.thread)
        thread.submit { _ in thread.removeSubscription(id) }
    }
}

/// A subscription's record on the bus thread.
final class Subscription: @unchecked Sendable {
    let id: UInt64
    unowned let thread: BusThread
    var slot: OpaquePointer?
    let handler: @Sendable (DBusSignal) -> Void
    let onEnd: @Sendable (DBusError?) -> Void
    /// Resumed once the bus has installed the match (or refused it).
    var installed: CheckedContinuation<Result<Void, DBusError>, Never>?

    init(
        id: UInt64, thread: BusThread, handler: @escaping @Sendable (DBusSignal) -> Void,
        onEnd: @escaping @Sendable (DBusError?) -> Void
    ) {
        self.id = id
        self.thread = thread
        self.handler = handler
        self.onEnd = onEnd
    }

    func end(_ error: DBusError?) {
        installed?.resume(returning: .failure(error ?? .failed("the subscription was cancelled")))
        installed = nil
        onEnd(error)
    }
}

// MARK: - Subscribing

extension DBusConnection {
    /// Calls `handler` (on the bus thread: keep it short) for every signal matching `rule`.
    /// Returns once the bus has installed the match, so no later signal is missed.
    public func subscribe(
        _ rule: DBusMatchRule, onEnd: @escaping @Sendable (DBusError?) -> Void = { _ in },
        handler: @escaping @Sendable (DBusSignal) -> Void
    ) async throws(DBusError) -> DBusSubscription {
        let thread = self.thread
        let text = rule.description
        let id = Mutex<UInt64>(0)
        let result: Result<Void, DBusError> = await withCheckedContinuation { continuation in
            let accepted = thread.submit { bus in
                let subscription = Subscription(id: thread.makeID(), thread: thread, handler: handler, onEnd: onEnd)
                subscription.installed = continuation
                var slot: OpaquePointer? = nil
                let r = sd_bus_add_match_async(
                    bus, &slot, text, signalTrampoline, installTrampoline,
                    Unmanaged.passUnretained(subscription).toOpaque())
                guard r >= 0 else {
                    subscription.installed = nil
                    continuation.resume(returning: .failure(.system("adding the match \(text)", r)))
                    return
                }
                subscription.slot = slot
                id.withLock { $0 = subscription.id }
                thread.addSubscription(subscription)
            }
            if !accepted { continuation.resume(returning: .failure(.disconnected("the D-Bus connection is closed"))) }
        }
        try result.get()
        return DBusSubscription(id: id.withLock { $0 }, thread: thread)
    }

    /// The signals matching `rule`, as a stream that ends when the connection closes. Ending
    /// the iteration (or dropping the stream) removes the match. Holds up to `buffer` signals
    /// a slow reader has not taken (the oldest are dropped beyond that).
    public func signals(_ rule: DBusMatchRule, buffer: Int = 256) async throws(DBusError) -> AsyncStream<DBusSignal> {
        let (stream, continuation) = AsyncStream.makeStream(
            of: DBusSignal.self, bufferingPolicy: .bufferingNewest(buffer))
        let subscription = try await subscribe(rule, onEnd: { _ in continuation.finish() }) { signal in
            continuation.yield(signal)
        }
        continuation.onTermination = { _ in subscription.cancel() }
        return stream
    }
}

/// sd-bus's callback for a matching signal.
private func signalTrampoline(
    _ message: OpaquePointer?, _ userdata: UnsafeMutableRawPointer?, _ error: UnsafeMutablePointer<sd_bus_error>?
) -> Int32 {
    guard let message, let userdata else { return 0 }
    let subscription = Unmanaged<Subscription>.fromOpaque(userdata).takeUnretainedValue()
    func text(_ pointer: UnsafePointer<CChar>?) -> String { pointer.map { String(cString: $0) } ?? "" }
    guard let arguments = try? DBusValue.readAll(from: message) else { return 0 }
    subscription.handler(
        DBusSignal(
            sender: text(sd_bus_message_get_sender(message)), path: text(sd_bus_message_get_path(message)),
            interface: text(sd_bus_message_get_interface(message)), member: text(sd_bus_message_get_member(message)),
            arguments: arguments))
    return 0
}

/// sd-bus's callback for the AddMatch reply.
private func installTrampoline(
    _ message: OpaquePointer?, _ userdata: UnsafeMutableRawPointer?, _ error: UnsafeMutablePointer<sd_bus_error>?
) -> Int32 {
    guard let message, let userdata else { return 0 }
    let subscription = Unmanaged<Subscription>.fromOpaque(userdata).takeUnretainedValue()
    let continuation = subscription.installed
    subscription.installed = nil
    switch BusThread.result(of: message) {
    case .success: continuation?.resume(returning: .success(()))
    case .failure(let error):
        continuation?.resume(returning: .failure(error))
        subscription.thread.removeSubscription(subscription.id, error)
    }
    return 0
}
