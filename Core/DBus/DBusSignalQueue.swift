/// Emits a daemon's signals in the order its events happened (a ``SerialEventQueue``), so that
/// whoever reports an event (an actor, a bus thread) never waits for the bus.
public final class DBusSignalQueue<Event: Sendable>: Sendable {
    private let queue: SerialEventQueue<Event>

    /// - Parameters:
    ///   - signal: the signal for an event (its member and arguments), or nil for none.
    ///   - after: runs after each event's signal, in order (a property's PropertiesChanged).
    ///   - failed: told when a signal could not be emitted.
    public init(
        connection: DBusConnection, path: String, interface: String,
        signal: @escaping @Sendable (Event) -> (member: String, arguments: [DBusValue])?,
        after: @escaping @Sendable (Event) async -> Void = { _ in },
        failed: @escaping @Sendable (String) -> Void
    ) {
        queue = SerialEventQueue { event in
            if let signal = signal(event) {
                do {
                    try await connection.emitSignal(
                        path: path, interface: interface, member: signal.member, signal.arguments)
                } catch {
                    failed("emitting \(signal.member): \(error)")
                }
            }
            await after(event)
        }
    }

    public func emit(_ event: Event) { queue.enqueue(event) }
}
