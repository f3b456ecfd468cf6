import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// maitred's log. As PID 1 each line goes to the console (the serial port the host reads, even
/// when the kernel is `quiet`) and into the kernel's log at debug level (so `dmesg` in the guest
/// has it without the console showing it twice); otherwise to standard error.
public enum KernelLog {
    private static let kmsg = Atomic<Int32>(-1)

    /// Also sends later lines to /dev/kmsg (once /dev is mounted).
    static func useKernelLog() {
        let fd = open("/dev/kmsg", O_WRONLY | O_CLOEXEC)
        if fd >= 0 { kmsg.store(fd, ordering: .relaxed) }
    }

    public static func info(_ message: String) { write(message) }
    public static func error(_ message: String) { write("error: \(message)") }

    private static func write(_ message: String) {
        let line = Array("maitred: \(message)\n".utf8)
        _ = line.withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }
        let fd = kmsg.load(ordering: .relaxed)
        if fd >= 0 {
            let entry = Array("<7>".utf8) + line
            _ = entry.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        }
    }
}
