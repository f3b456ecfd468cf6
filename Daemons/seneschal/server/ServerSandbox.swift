import CLinux
import Sandbox

#if canImport(Glibc)
    import Glibc
#endif

/// How a 9P server process confines itself before it reads a byte from a guest, the way ChromeOS
/// runs its 9s under minijail: its own mount namespace whose root is the server's folder (the
/// shares seneschal mounts there, and /proc for descriptor paths, nothing else of the host), the
/// user it serves as, no capabilities, no_new_privs and a seccomp allowlist.
enum ServerSandbox {
    /// Exit status when seccomp stops a system call (SIGSYS + 128).
    static let violationExitStatus: Int32 = 128 + SIGSYS

    /// Enters the sandbox. `folder` holds `shares/` (bind mounts propagate into it from the
    /// daemon's namespace) and an empty `proc/`. Call before starting any thread.
    static func enter(folder: String, uid: uid_t, gid: gid_t) throws(ServerSetupError) {
        try step("unshare(CLONE_NEWNS)") { clinux_unshare_mount_namespace() }
        // Slave: the daemon's later share mounts reach us; nothing we mount reaches back.
        try step("making / a slave mount") { clinux_mount_propagation("/", 1, 1) }
        try step("chdir \(folder)") { chdir(folder) == 0 ? 0 : -errno }
        try step("mounting /proc") { clinux_mount_bind("/proc", "proc") }
        try step("pivot_root to \(folder)") { clinux_pivot_to_cwd() }
        // The folder's own tmpfs read-only: the guest may not add names beside the shares.
        try step("making / read-only") { remountReadOnly("/") }
        try step("setgroups") { setgroups(1, [gid]) == 0 ? 0 : -errno }
        try step("setresgid \(gid)") { setresgid(gid, gid, gid) == 0 ? 0 : -errno }
        try step("setresuid \(uid)") { setresuid(uid, uid, uid) == 0 ? 0 : -errno }
        // A change of uid makes the process undumpable, which hands /proc/self/fd to root; the
        // server reaches its descriptors through those paths (chmod, xattrs of O_PATH fds).
        try step("PR_SET_DUMPABLE") { prctl_dumpable() }
        do {
            try SeccompFilter.installReporter(prefix: "seneschal-server", exitStatus: violationExitStatus)
            try Privileges.dropAllCapabilities()
            try Privileges.forbidNewPrivileges()
            try policy.load(allThreads: true)
        } catch {
            throw ServerSetupError("entering the sandbox: \(error)")
        }
    }

    private static func remountReadOnly(_ path: String) -> Int32 {
        mount(nil, path, nil, UInt(MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC), nil) == 0
            ? 0 : -errno
    }

    private static func prctl_dumpable() -> Int32 {
        clinux_set_dumpable(1) == 0 ? 0 : -errno
    }

    private static func step(_ what: String, _ body: () -> Int32) throws(ServerSetupError) {
        let result = body()
        guard result >= 0 else { throw ServerSetupError("\(what): \(String(cString: strerror(-result)))") }
    }

    /// What a 9P server does: file system calls on descriptors and paths beneath them, socket
    /// I/O, threads (one per request in flight), memory. No exec, no new sockets, no mounts.
    static var policy: SeccompFilter {
        var filter = SeccompFilter(defaultAction: .trap)
        filter.allow([
            // Files, beneath the share root through descriptors.
            "openat", "openat2", "close", "read", "write", "pread64", "pwrite64", "readv", "writev", "lseek",
            "fstat", "newfstatat", "statx", "fstatfs", "statfs", "getdents64", "mkdirat", "mknodat", "symlinkat",
            "readlinkat", "linkat", "renameat", "renameat2", "unlinkat", "fchownat", "fchown", "fchmodat", "fchmod",
            "chmod", "utimensat", "ftruncate", "truncate", "fsync", "fdatasync", "fallocate", "fcntl", "flock",
            "getxattr", "lgetxattr", "fgetxattr", "setxattr", "lsetxattr", "fsetxattr", "listxattr", "llistxattr",
            "flistxattr", "removexattr", "lremovexattr", "fremovexattr", "dup", "dup3", "access", "faccessat",
            "faccessat2", "readlink", "umask",
            // Connections on the socket seneschal passed in.
            "accept", "accept4", "getpeername", "getsockname", "getsockopt", "recvfrom", "sendto", "recvmsg",
            "sendmsg", "shutdown", "poll", "ppoll",
            // Memory and threads (Swift runtime, glibc).
            "mmap", "munmap", "mprotect", "madvise", "mremap", "brk", "futex", "set_robust_list", "rseq",
            "sched_yield", "sched_getaffinity", "getrandom",
            // Signals and time.
            "rt_sigprocmask", "rt_sigaction", "rt_sigreturn", "sigaltstack", "tgkill", "restart_syscall",
            "clock_gettime", "clock_nanosleep", "nanosleep", "gettid", "getpid", "getuid", "geteuid", "getgid",
            "getegid", "exit", "exit_group",
        ])
        filter.allowThreadsOnly()
        filter.allow("prctl", argument: 0, in: [15])  // PR_SET_NAME, for thread names
        filter.allow("setsockopt", argument: 2, in: [UInt64(SO_SNDBUF)])  // a session's send buffer
        return filter
    }
}

/// A step of the server's setup that failed, named.
struct ServerSetupError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
