import CKVM
import Sandbox
import Virtio

#if canImport(Glibc)
    import Glibc
#endif

/// What a running `vmm` may do once its VM is built, in the spirit of Firecracker's and
/// crosvm's per-process seccomp policies: no new files, processes or non-Unix sockets, only the
/// KVM ioctls a running VM needs, and no capabilities.
enum VMMSandbox {
    /// Exit status when the sandbox stops a system call (SIGSYS's signal number + 128, as a
    /// shell would report a process killed by it).
    static let violationExitStatus: Int32 = 128 + SIGSYS

    /// ioctls on the VM, vCPU and eventfd descriptors while the VM runs (reading registers only
    /// to report where a guest died).
    static let kvmIoctls: [UInt64] = [
        CKVM_RUN, CKVM_IRQ_LINE, CKVM_SIGNAL_MSI, CKVM_SET_GSI_ROUTING, CKVM_IRQFD, CKVM_IOEVENTFD,
        CKVM_GET_REGS, CKVM_GET_SREGS,
    ].map { UInt64($0) }

    /// TAP ioctls: TUNSETOFFLOAD, when a guest's virtio-net driver accepts offloads (after the
    /// sandbox is entered).
    static let tapIoctls: [UInt64] = [TapDevice.setOffloadRequest]

    /// Terminal ioctls for the interactive console: tcgetattr/tcsetattr, window size, FIONBIO.
    static let terminalIoctls: [UInt64] = [0x5401, 0x5402, 0x5403, 0x5404, 0x5413, 0x5421]

    static var policy: SeccompFilter { policy(placingThreads: false) }

    /// The allowlist; `placingThreads` adds `sched_setaffinity` on the calling thread only (pid
    /// 0), for a VM whose vCPU threads are placed on CPUs of their own (`--vcpu-affinity`).
    static func policy(placingThreads: Bool) -> SeccompFilter {
        var filter = SeccompFilter(defaultAction: .trap)
        filter.allow([
            // I/O on descriptors opened before the sandbox (disks, consoles, sockets, eventfds, the TAP).
            "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "lseek", "fsync",
            "fdatasync", "close", "fstat", "newfstatat", "fcntl",
            // Device thread, control socket, and the eventfds made when a vector first fires.
            "epoll_wait", "epoll_pwait", "epoll_ctl", "eventfd2", "accept", "accept4", "recvfrom", "sendto",
            "recvmsg", "sendmsg", "shutdown", "poll", "ppoll",
            // Memory and threads (Swift runtime, glibc).
            "mmap", "munmap", "mprotect", "madvise", "mremap", "brk", "futex", "set_robust_list", "rseq",
            "sched_yield", "getrandom",
            // Signals: vCPU kicks, SIGTERM/SIGINT through sigwait.
            "rt_sigprocmask", "rt_sigaction", "rt_sigreturn", "rt_sigtimedwait", "sigaltstack", "tgkill",
            "restart_syscall",
            // Time and identity.
            "clock_gettime", "clock_nanosleep", "nanosleep", "gettid", "getpid",
            // The control socket's file is removed on exit.
            "unlink", "unlinkat",
            "exit", "exit_group",
        ])
        filter.allow("ioctl", argument: 1, in: kvmIoctls + terminalIoctls + tapIoctls)
        filter.allowThreadsOnly()
        // Opening files fails (not traps): glibc's malloc reads /proc/sys/vm/overcommit_memory
        // when it first trims a thread's heap, and copes with the error.
        filter.refuse("openat", errno: EACCES)
        filter.refuse("open", errno: EACCES)
        filter.allow("prctl", argument: 0, in: [15])  // PR_SET_NAME
        // Control-socket clients' timeouts; vsock host sockets' send buffers.
        filter.allow("setsockopt", argument: 2, in: [UInt64(SO_RCVTIMEO), UInt64(SO_SNDBUF)])
        // vsock: a guest connection to host port P connects to the Unix socket <path>_P.
        filter.allow("socket", argument: 0, in: [UInt64(AF_UNIX)])
        filter.allow(["connect"])
        if placingThreads { filter.allow("sched_setaffinity", argument: 0, in: [0]) }
        return filter
    }

    /// Drops every capability, sets no_new_privs and loads ``policy``. Call before starting any
    /// thread: capabilities are per thread and new threads inherit the caller's.
    static func enter(placingThreads: Bool = false) throws(VMMError) {
        // glibc reads /etc/localtime on the first time conversion (even gmtime_r, which the
        // CMOS clock uses); do it now, while files may still be opened.
        tzset()
        do {
            try SeccompFilter.installReporter(prefix: "vmm", exitStatus: violationExitStatus)
            try Privileges.dropAllCapabilities()
            try Privileges.forbidNewPrivileges()
            try policy(placingThreads: placingThreads).load(allThreads: true)
        } catch {
            throw VMMError("cannot enter the sandbox: \(error) (--disable-sandbox runs without it)")
        }
    }
}
