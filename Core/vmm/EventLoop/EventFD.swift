import CLinux

#if canImport(Glibc)
    import Glibc
#endif

/// A Linux eventfd: a counter the kernel can signal (KVM's ioeventfd) or wait on (KVM's irqfd),
/// and that an ``EventLoop`` can watch. Non-blocking and close-on-exec.
public final class EventFD: Sendable {
    /// The descriptor, valid for the object's lifetime.
    public let fd: Int32

    public init() throws(EventLoopError) {
        let fd = eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK))
        guard fd >= 0 else { throw .system("eventfd", errno: errno) }
        self.fd = fd
    }

    deinit { close(fd) }

    /// Adds one to the counter, waking whoever waits on it.
    public func signal() {
        var one: UInt64 = 1
        while write(fd, &one, 8) < 0 && errno == EINTR {}
    }

    /// Reads and clears the counter; returns 0 when it was already clear.
    @discardableResult
    public func drain() -> UInt64 {
        var value: UInt64 = 0
        while true {
            if read(fd, &value, 8) == 8 { return value }
            if errno != EINTR { return 0 }
        }
    }
}

/// A failed system call in the event machinery, naming it.
public enum EventLoopError: Error, Equatable, CustomStringConvertible {
    case system(String, errno: Int32)

    public var description: String {
        switch self {
        case .system(let call, let code): return "\(call) failed: \(String(cString: strerror(code)))"
        }
    }
}
