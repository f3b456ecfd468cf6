import CP9System

#if canImport(Glibc)
    import Glibc
#endif

// The host side of every operation: descriptors, errno, and the confined lookups.
//
// Confinement: the export root is opened once as an O_PATH directory descriptor. Every fid holds
// O_PATH descriptors (never path strings): its own file and the chain of directories it was
// walked through. A walk step opens exactly one name beneath the current directory with
// openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS, O_PATH | O_NOFOLLOW):
// a symlink is opened as itself and never followed, whatever it points to or whenever it was
// swapped in. `..` pops the fid's own chain (never the host's `..`), so it stops at the root.
// Creation, removal, renames and links name one validated component (no `/`, not `.`/`..`)
// relative to a directory descriptor, so they cannot reach outside either, however the tree is
// renamed meanwhile. Operations that need a real descriptor (open for I/O, chmod, truncate,
// utimes, xattrs, link) go through /proc/self/fd/N of the fid's O_PATH descriptor, which names
// that very inode and nothing else; symlinks are refused before any of them.

// MARK: - Errors

/// A Linux errno that becomes an Rlerror.
struct P9Errno: Error, Equatable {
    let code: Int32

    init(_ code: Int32) { self.code = code }

    /// The calling thread's errno (EIO if it is somehow 0).
    static var current: P9Errno { P9Errno(errno == 0 ? EIO : errno) }
}

/// Runs a system call returning -1 on failure, retrying on EINTR.
@discardableResult
func check(_ body: () -> Int32) throws(P9Errno) -> Int32 {
    while true {
        let result = body()
        if result >= 0 { return result }
        if errno != EINTR { throw .current }
    }
}

@discardableResult
func check(_ body: () -> Int) throws(P9Errno) -> Int {
    while true {
        let result = body()
        if result >= 0 { return result }
        if errno != EINTR { throw .current }
    }
}

// MARK: - Descriptors

/// An owned file descriptor, closed when the last reference goes (so an operation that still
/// uses a fid's descriptor keeps it open while a Tclunk races with it).
final class Descriptor: Sendable {
    let fd: Int32

    init(_ fd: Int32) { self.fd = fd }

    deinit { close(fd) }

    /// /proc/self/fd/N: names exactly this descriptor's inode.
    var procPath: String { "/proc/self/fd/\(fd)" }

    /// fstat of the descriptor itself (an O_PATH descriptor of a symlink stats the symlink).
    func stat() throws(P9Errno) -> HostStat {
        var st = Glibc.stat()
        try check { fstatat(fd, "", &st, P9SYS_AT_EMPTY_PATH | P9SYS_AT_SYMLINK_NOFOLLOW) }
        return HostStat(st)
    }
}

/// The parts of struct stat the server uses.
struct HostStat {
    let raw: Glibc.stat

    init(_ raw: Glibc.stat) { self.raw = raw }

    var mode: UInt32 { UInt32(raw.st_mode) }
    var fileType: UInt32 { mode & 0o170000 }
    var isDirectory: Bool { fileType == 0o040000 }
    var isSymlink: Bool { fileType == 0o120000 }
    var isRegular: Bool { fileType == 0o100000 }

    var qid: P9Qid {
        let type = isDirectory ? P9.qidDirectory : isSymlink ? P9.qidSymlink : P9.qidFile
        return P9Qid(type: type, version: 0, path: UInt64(raw.st_ino))
    }

    /// Same inode on the same device.
    func sameFile(as other: HostStat) -> Bool { raw.st_ino == other.raw.st_ino && raw.st_dev == other.raw.st_dev }
}

// MARK: - Names

/// Checks a name the client wants created, removed or looked up: one component, not empty, no
/// `/` or NUL, not `.` or `..`.
func validateName(_ name: String) throws(P9Errno) {
    guard !name.isEmpty, name != ".", name != ".." else { throw P9Errno(EINVAL) }
    guard name.utf8.count <= 255 else { throw P9Errno(ENAMETOOLONG) }
    for byte in name.utf8 where byte == UInt8(ascii: "/") || byte == 0 { throw P9Errno(EINVAL) }
}

/// Resolution rules for every lookup: beneath the starting directory, no symlinks followed
/// (a trailing one opened as itself with O_NOFOLLOW), no /proc-style magic links.
let confinedResolve = P9SYS_RESOLVE_BENEATH | P9SYS_RESOLVE_NO_SYMLINKS | P9SYS_RESOLVE_NO_MAGICLINKS

/// Opens `name` (one validated component) beneath `directory` as an O_PATH descriptor.
func openPath(in directory: Descriptor, _ name: String) throws(P9Errno) -> Descriptor {
    let fd = try check {
        p9sys_openat2(
            directory.fd, name, P9SYS_O_PATH | P9SYS_O_NOFOLLOW | P9SYS_O_CLOEXEC, 0, confinedResolve)
    }
    return Descriptor(fd)
}

/// Opens the inode behind the O_PATH descriptor `file` for I/O with `flags` (never creating).
/// Symlinks are refused (ELOOP); FIFOs, sockets and devices are opened non-blocking so that a
/// worker never waits for a peer.
func reopen(_ file: Descriptor, flags: Int32, stat: HostStat) throws(P9Errno) -> Descriptor {
    guard !stat.isSymlink else { throw P9Errno(ELOOP) }
    var flags = flags | P9SYS_O_CLOEXEC
    if !stat.isRegular && !stat.isDirectory { flags |= O_NONBLOCK }
    let fd = try check { open(file.procPath, flags) }
    return Descriptor(fd)
}
