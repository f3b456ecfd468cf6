import CLinux

#if canImport(Glibc)
    import Glibc
#endif

/// A host path someone asked to share, opened and checked: absolute, no symlink anywhere in
/// it, a directory or a regular file. The descriptor (O_PATH) is what gets mounted, so a path
/// swapped after the checks cannot redirect the share.
struct SharePath: ~Copyable {
    let path: String
    let fd: Int32
    let isDirectory: Bool
    let owner: uid_t

    init(_ path: String) throws(SeneschalError) {
        guard path.hasPrefix("/") else { throw .invalid("the path to share must be absolute: \(path)") }
        let trimmed = path.count > 1 && path.hasSuffix("/") ? String(path.dropLast()) : path
        guard let resolved = realpath(trimmed, nil) else {
            let code = errno
            if code == ENOENT || code == ENOTDIR { throw .init(.notFound, "no such file or directory: \(path)") }
            throw .system("resolving \(path)", code)
        }
        let real = String(cString: resolved)
        free(resolved)
        // Symlinks, "." and ".." anywhere in the path are refused, not followed: what is shared
        // is exactly what the caller named.
        guard real == trimmed else {
            throw .invalid("\(path) is not a real path (it leads to \(real) through a symlink, . or ..): share \(real)")
        }
        let fd = open(real, CLINUX_O_PATH | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw .system("opening \(real)", errno) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let code = errno
            close(fd)
            throw .system("stat \(real)", code)
        }
        let kind = info.st_mode & S_IFMT
        guard kind == S_IFDIR || kind == S_IFREG else {
            close(fd)
            throw .invalid("\(real) is neither a directory nor a regular file")
        }
        self.path = real
        self.fd = fd
        isDirectory = kind == S_IFDIR
        owner = info.st_uid
    }

    deinit { close(fd) }

    /// Mounts a copy of the path at `target` (which must exist and be of the same kind):
    /// read-only unless `writable`, nosuid and nodev always. The mount is made detached and
    /// given its attributes before it is attached, so that no one, including the server's
    /// namespace it propagates to, ever sees it writable when it should not be.
    func mount(at target: String, writable: Bool) throws(SeneschalError) {
        let tree = clinux_clone_tree(fd)
        guard tree >= 0 else { throw .system("cloning the mount of \(path)", -tree) }
        defer { close(tree) }
        var result = clinux_tree_set_attributes(tree, writable ? 0 : 1)
        guard result == 0 else { throw .system("setting the attributes of the share of \(path)", -result) }
        result = clinux_attach_tree(tree, target)
        guard result == 0 else { throw .system("mounting \(path) at \(target)", -result) }
    }
}
