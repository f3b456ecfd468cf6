import DBus

/// Turns VM events into the interface's D-Bus signals, emitted in the order they happened.
public final class ConciergeSignals: Sendable {
    private let queue: AsyncStream<VMEvent>.Continuation

    /// - Parameter failed: told when a signal could not be emitted.
    public init(connection: DBusConnection, failed: @escaping @Sendable (String) -> Void) {
        let (stream, continuation) = AsyncStream.makeStream(of: VMEvent.self)
        queue = continuation
        Task {
            for await event in stream {
                let signal = ConciergeInterface.signal(for: event)
                do {
                    try await connection.emitSignal(
                        path: ConciergeInterface.path, interface: ConciergeInterface.name, member: signal.member,
                        signal.arguments)
                } catch {
                    failed("emitting \(signal.member): \(error)")
                }
            }
        }
    }

    deinit { queue.finish() }

    public func emit(_ event: VMEvent) { queue.yield(event) }
}
