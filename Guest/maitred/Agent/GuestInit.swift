import CGuestSystem
import CLinux

#if canImport(Glibc)
    import Glibc
#endif

/// PID 1's duties before anything else runs: the kernel file systems, a console on 0/1/2, the
/// hostname, loopback, kernel modules and, when the command line names one, a root disk. Must
/// run before any thread starts (the Swift runtime and glibc read /proc and /sys lazily).
public enum GuestInit {
    /// The file listing kernel modules to load, one path per line, in dependency order (the
    /// image builder writes it).
    public static let moduleList = "/etc/maitred/modules"

    public static func prepare() {
        mountKernelFileSystems()
        ensureConsole()
        KernelLog.useKernelLog()
        setenv("PATH", ProcessSpawner.defaultEnvironment["PATH"] ?? "/usr/bin:/bin", 1)
        let hostname = commandLineValue("maitred.hostname") ?? "vmtools"
        if sethostname(hostname, hostname.utf8.count) != 0 {
            KernelLog.error("sethostname \(hostname): \(String(cString: strerror(errno)))")
        }
        let loopback = clinux_interface_set_up("lo", 1)
        if loopback < 0 { KernelLog.error("bringing lo up: \(String(cString: strerror(-loopback)))") }
        loadModules()
        switchRootIfAsked()
    }

    private struct Mount {
        let source, target, type: String
        let flags: Int
        let data: String
    }

    private static let mounts: [Mount] = [
        Mount(source: "proc", target: "/proc", type: "proc", flags: MS_NOSUID | MS_NODEV | MS_NOEXEC, data: ""),
        Mount(source: "sysfs", target: "/sys", type: "sysfs", flags: MS_NOSUID | MS_NODEV | MS_NOEXEC, data: ""),
        Mount(source: "devtmpfs", target: "/dev", type: "devtmpfs", flags: MS_NOSUID, data: "mode=0755"),
        Mount(
            source: "devpts", target: "/dev/pts", type: "devpts", flags: MS_NOSUID | MS_NOEXEC,
            data: "gid=5,mode=0620,ptmxmode=0666"),
        Mount(source: "tmpfs", target: "/dev/shm", type: "tmpfs", flags: MS_NOSUID | MS_NODEV, data: "mode=1777"),
        Mount(source: "tmpfs", target: "/run", type: "tmpfs", flags: MS_NOSUID | MS_NODEV, data: "mode=0755"),
        Mount(source: "tmpfs", target: "/tmp", type: "tmpfs", flags: MS_NOSUID | MS_NODEV, data: "mode=1777"),
        Mount(
            source: "cgroup2", target: "/sys/fs/cgroup", type: "cgroup2", flags: MS_NOSUID | MS_NODEV | MS_NOEXEC,
            data: ""),
    ]

    private static func mountKernelFileSystems() {
        for m in mounts {
            mkdir(m.target, 0o755)
            if Glibc.mount(m.source, m.target, m.type, UInt(m.flags), m.data) != 0 && errno != EBUSY {
                // Logged later, once there is a log: keep going, the rest may still work.
                failedMounts.append("\(m.type) on \(m.target): \(String(cString: strerror(errno)))")
            }
        }
    }

    nonisolated(unsafe) private static var failedMounts: [String] = []

    /// The kernel opens /dev/console for init only if the initramfs has that node; without it
    /// 0, 1 and 2 are closed, and the first files opened would take their place.
    private static func ensureConsole() {
        for fd: Int32 in 0...2 where fcntl(fd, F_GETFD) < 0 {
            let console = open("/dev/console", O_RDWR)
            if console >= 0 && console != fd {
                dup2(console, fd)
                close(console)
            }
        }
        for failure in failedMounts { KernelLog.error("mount \(failure)") }
    }

    private static func loadModules() {
        guard let list = FileText.read(moduleList) else { return }
        let kernel = (try? MaitredService.kernelVersion().release) ?? ""
        var loaded = 0
        for line in list.split(separator: "\n") where !line.hasPrefix("#") && !line.isEmpty {
            let path = line.hasPrefix("/") ? String(line) : "/lib/modules/\(kernel)/\(line)"
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else {
                KernelLog.error("module \(path): \(String(cString: strerror(errno)))")
                continue
            }
            let result = cgs_finit_module(fd, "")
            close(fd)
            if result == 0 || result == -EEXIST {
                loaded += 1
            } else {
                KernelLog.error("loading module \(path): \(String(cString: strerror(-result)))")
            }
        }
        KernelLog.info("loaded \(loaded) kernel modules")
    }

    /// The value of `key=value` on the kernel command line.
    static func commandLineValue(_ key: String) -> String? {
        commandLineWords().first { $0.hasPrefix("\(key)=") }.map { String($0.dropFirst(key.count + 1)) }
    }
}
