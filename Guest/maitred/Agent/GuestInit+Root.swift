import CGuestSystem

#if canImport(Glibc)
    import Glibc
#endif

// MARK: - Switching to a root disk

extension GuestInit {
    /// Where the root disk is mounted before it becomes `/`.
    static let newRoot = "/sysroot"

    /// How long to wait for the root disk's device node after virtio_blk was loaded: devtmpfs
    /// creates it from a kernel thread, a moment after the driver probed.
    static let rootDeviceWaitMilliseconds = 10_000

    /// With `maitred.root=DEVICE` on the kernel command line (for example `/dev/vda`), mounts
    /// that disk and makes it `/`, moving the kernel file systems along, the way
    /// `switch_root` does; maitred keeps running from the initramfs it was loaded from.
    /// `maitred.rootfstype=` (default ext4) and `maitred.rootflags=` (mount data) refine the
    /// mount; a bare `ro` word mounts it read-only. Returns false, with the reason logged, if
    /// the disk could not be used: the guest then stays on its initramfs, still reachable.
    @discardableResult
    static func switchRootIfAsked() -> Bool {
        guard let device = commandLineValue("maitred.root") else { return true }
        let type = commandLineValue("maitred.rootfstype") ?? "ext4"
        let data = commandLineValue("maitred.rootflags") ?? ""
        let readOnly = commandLineWords().contains("ro")
        do {
            try waitForDevice(device)
            try switchRoot(to: device, type: type, readOnly: readOnly, data: data)
            KernelLog.info("root is \(device) (\(type)\(readOnly ? ", read-only" : ""))")
            return true
        } catch {
            KernelLog.error("cannot use \(device) as root, staying on the initramfs: \(error)")
            return false
        }
    }

    private static func waitForDevice(_ device: String) throws(RootError) {
        var status = stat()
        for _ in 0..<(rootDeviceWaitMilliseconds / 20) {
            if stat(device, &status) == 0 {
                guard status.st_mode & S_IFMT == S_IFBLK else { throw .notABlockDevice(device) }
                return
            }
            usleep(20_000)
        }
        throw .deviceMissing(device, afterMilliseconds: rootDeviceWaitMilliseconds)
    }

    private static func switchRoot(to device: String, type: String, readOnly: Bool, data: String)
        throws(RootError)
    {
        mkdir(newRoot, 0o755)
        let flags = UInt(readOnly ? MS_RDONLY : 0)
        guard Glibc.mount(device, newRoot, type, flags, data) == 0 else { throw .system("mount \(device)", errno) }
        // The kernel file systems come along (with what is mounted below them: /dev/pts,
        // /sys/fs/cgroup); a target the disk lacks is made, on a read-only disk it must exist.
        for target in ["/proc", "/sys", "/dev", "/run", "/tmp"] {
            let destination = newRoot + target
            mkdir(destination, 0o755)
            guard Glibc.mount(target, destination, nil, UInt(MS_MOVE), nil) == 0 else {
                let failure = errno
                umount2(newRoot, Int32(MNT_DETACH))
                throw .system("moving \(target) to the root disk", failure)
            }
        }
        guard chdir(newRoot) == 0 else { throw .system("chdir \(newRoot)", errno) }
        guard Glibc.mount(".", "/", nil, UInt(MS_MOVE), nil) == 0 else {
            throw .system("moving the root disk to /", errno)
        }
        guard chroot(".") == 0 else { throw .system("chroot", errno) }
        guard chdir("/") == 0 else { throw .system("chdir /", errno) }
    }

    /// The words of the kernel command line.
    static func commandLineWords() -> [Substring] {
        (FileText.read("/proc/cmdline") ?? "").split(whereSeparator: { $0 == " " || $0 == "\n" })
    }
}

/// Why the root disk could not be used.
enum RootError: Error, CustomStringConvertible {
    case deviceMissing(String, afterMilliseconds: Int)
    case notABlockDevice(String)
    case system(String, Int32)

    var description: String {
        switch self {
        case .deviceMissing(let device, let ms): return "\(device) did not appear within \(ms) ms"
        case .notABlockDevice(let device): return "\(device) is not a block device"
        case .system(let what, let code): return "\(what): \(String(cString: strerror(code)))"
        }
    }
}
