/// Hands events, one at a time and in the order they came, to an async handler running in a
/// task of its own: whoever reports an event (an actor, a bus thread) never waits for it.
public final class SerialEventQueue<Event: Sendable>: Sendable {
    private let queue: AsyncStream<Event>.Continuation

    public init(_ handle: @escaping @Sendable (Event) async -> Void) {
        let (stream, continuation) = AsyncStream.makeStream(of: Event.self)
        queue = continuation
        Task {
            for await event in stream { await handle(event) }
        }
    }

    deinit { queue.finish() }

    public func enqueue(_ event: Event) { queue.yield(event) }
}
