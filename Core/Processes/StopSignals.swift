import Dispatch

#if canImport(Glibc)
    import Glibc
#endif

/// The signals that ask a daemon to stop (SIGTERM, SIGINT), as a stream. The signals themselves
/// are ignored and watched through Dispatch sources, which live as long as this object:
/// blocking them would have to happen before any thread exists, which an async main cannot
/// promise.
public final class StopSignals: @unchecked Sendable {
    public let stream: AsyncStream<Int32>
    private let sources: [any DispatchSourceSignal]

    public init(_ numbers: [Int32] = [SIGTERM, SIGINT]) {
        let (stream, continuation) = AsyncStream.makeStream(of: Int32.self)
        self.stream = stream
        sources = numbers.map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { continuation.yield(number) }
            source.resume()
            return source
        }
    }

    /// The first stop signal to arrive.
    public func next() async -> Int32 { await stream.first { _ in true } ?? SIGTERM }
}
