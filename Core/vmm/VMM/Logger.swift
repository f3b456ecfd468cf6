#if canImport(Glibc)
    import Glibc
#endif

/// The VMM's log: lines on stderr prefixed with the VM's name, and the time since the process
/// started (boot markers are reported against it). Kept free of Foundation and swift-log to keep
/// the VMM's resident memory small.
public struct Logger: Sendable {
    public let name: String
    let startNanoseconds: UInt64

    public init(name: String, startNanoseconds: UInt64 = Logger.now()) {
        self.name = name
        self.startNanoseconds = startNanoseconds
    }

    public func info(_ message: String) { emit(message) }

    public func error(_ message: String) { emit("error: " + message) }

    private func emit(_ message: String) {
        let line = "\(name): \(message)\n"
        _ = line.withCString { write(STDERR_FILENO, $0, strlen($0)) }
    }

    /// Milliseconds since the start, with one decimal.
    public var elapsedMilliseconds: String {
        let ns = Self.now() - startNanoseconds
        return "\(ns / 1_000_000).\(ns / 100_000 % 10)"
    }

    public static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}
