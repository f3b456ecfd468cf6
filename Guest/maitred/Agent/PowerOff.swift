import CGuestSystem

#if canImport(Glibc)
    import Glibc
#endif

/// PID 1's way out: end every process, unmount, power off. Never returns (init must not exit).
public enum PowerOff {
    public static func run(reason: String) -> Never {
        KernelLog.info("powering off: \(reason)")
        sync()
        kill(-1, SIGTERM)
        // Give processes up to 2 s to go; kill(-1, 0) fails with ESRCH once none is left.
        for _ in 0..<20 where kill(-1, 0) == 0 { usleep(100_000) }
        kill(-1, SIGKILL)
        let mounts = (FileText.read("/proc/mounts") ?? "").split(separator: "\n").compactMap { line in
            line.split(separator: " ").dropFirst().first.map(String.init)
        }
        for target in mounts.reversed() where target != "/" {
            umount2(target, Int32(MNT_DETACH))
        }
        sync()
        let result = cgs_power_off()
        KernelLog.error("power-off failed: \(String(cString: strerror(-result))); halting")
        while true { pause() }
    }
}
