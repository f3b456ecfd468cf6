import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// maitred's log: as PID 1 into the kernel's log (/dev/kmsg), so its lines reach the host on the
/// serial console interleaved with the kernel's; otherwise standard error.
public enum KernelLog {
    private static let kmsg = Atomic<Int32>(-1)

    /// Sends later lines to /dev/kmsg (once /dev is mounted).
    static func useKernelLog() {
        let fd = open("/dev/kmsg", O_WRONLY | O_CLOEXEC)
        if fd >= 0 { kmsg.store(fd, ordering: .relaxed) }
    }

    public static func info(_ message: String) { write(level: 6, message) }
    public static func error(_ message: String) { write(level: 3, message) }

    private static func write(level: Int, _ message: String) {
        let fd = kmsg.load(ordering: .relaxed)
        let line = fd >= 0 ? "<\(level)>maitred: \(message)\n" : "maitred: \(message)\n"
        let bytes = Array(line.utf8)
        _ = bytes.withUnsafeBytes { Glibc.write(fd >= 0 ? fd : 2, $0.baseAddress, $0.count) }
    }
}
