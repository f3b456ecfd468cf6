import CLinux

#if canImport(Glibc)
    import Glibc
#endif

/// A periodic timer as a descriptor (timerfd on the monotonic clock) for an ``EventLoop``:
/// readable once per elapsed interval. Create it before a sandbox forbids timerfd_create.
public final class IntervalTimer: Sendable {
    public let fd: Int32

    public init(milliseconds: Int) throws(EventLoopError) {
        let fd = timerfd_create(CLOCK_MONOTONIC, Int32(TFD_CLOEXEC | TFD_NONBLOCK))
        guard fd >= 0 else { throw .system("timerfd_create", errno: errno) }
        let interval = timespec(tv_sec: milliseconds / 1000, tv_nsec: (milliseconds % 1000) * 1_000_000)
        var spec = itimerspec(it_interval: interval, it_value: interval)
        guard timerfd_settime(fd, 0, &spec, nil) == 0 else {
            let code = errno
            close(fd)
            throw .system("timerfd_settime", errno: code)
        }
        self.fd = fd
    }

    deinit { close(fd) }

    /// Clears the expirations counted so far; returns how many there were.
    @discardableResult
    public func drain() -> UInt64 {
        var count: UInt64 = 0
        return read(fd, &count, 8) == 8 ? count : 0
    }

    /// Monotonic time in milliseconds, for deadlines checked on each tick.
    public static func nowMilliseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1000 + UInt64(now.tv_nsec) / 1_000_000
    }
}
