import CP9System

#if canImport(Glibc)
    import Glibc
#endif

// Extended attributes, `user.*` only: other namespaces (security, trusted, system) are host
// policy and stay invisible to the guest. Values go through /proc/self/fd/N of the fid's O_PATH
// descriptor (the f*xattr calls refuse O_PATH); symlinks have no user xattrs on Linux and are
// never touched.

/// Linux's largest xattr value (XATTR_SIZE_MAX) and name list (XATTR_LIST_MAX).
let xattrMaxSize = 65536

extension P9Session {
    func isUserXattr(_ name: String) -> Bool { name.hasPrefix("user.") && name.utf8.count > 5 }

    /// Txattrwalk: newfid gets the value of `name` (or, for "", the list of user.* names) to read.
    func xattrwalk(fid: UInt32, newFid: UInt32, name: String) throws(P9Errno) -> P9Response {
        let source = try lookup(fid)
        let state = source.current
        if newFid != fid, fids.withLock({ $0[newFid] != nil }) { throw P9Errno(EBADF) }
        let st = try state.file.stat()
        var contents: [UInt8]
        if name.isEmpty {
            contents = st.isSymlink ? [] : try listUserXattrs(state.file)
        } else {
            guard isUserXattr(name), !st.isSymlink else { throw P9Errno(ENODATA) }
            contents = try getXattr(state.file, name)
        }
        let buffer = try P9XattrBuffer(capacity: contents.count, contents: contents, budget: xattrBudget)
        var walked = state
        walked.use = .xattrRead(buffer)
        try install(newFid, P9Fid(uid: source.uid, state: walked), replacing: newFid == fid)
        return .xattrwalk(size: UInt64(contents.count))
    }

    /// Txattrcreate: the fid becomes the place the value is written to; Tclunk sets it (or, for
    /// a size of 0, removes the attribute).
    func xattrcreate(fid id: UInt32, name: String, size: UInt64, flags: UInt32) throws(P9Errno) -> P9Response {
        try requireWritable()
        guard isUserXattr(name) else { throw P9Errno(EOPNOTSUPP) }
        guard size <= UInt64(xattrMaxSize) else { throw P9Errno(E2BIG) }
        // XATTR_CREATE (1) and XATTR_REPLACE (2) only.
        guard flags & ~3 == 0 else { throw P9Errno(EINVAL) }
        let fid = try lookup(id)
        let state = fid.current
        guard case .path = state.use else { throw P9Errno(EINVAL) }
        guard try !state.file.stat().isSymlink else { throw P9Errno(EPERM) }
        let buffer = try P9XattrBuffer(capacity: Int(size), budget: xattrBudget)
        fid.state.withLock { $0.use = .xattrWrite(name: name, flags: Int32(flags), buffer: buffer) }
        return .xattrcreate
    }

    /// Sets (or removes) the attribute a Txattrcreate fid collected, at its Tclunk.
    func commitXattr(file: Descriptor, name: String, flags: Int32, buffer: P9XattrBuffer) throws(P9Errno) {
        let value = buffer.bytes.withLock { $0 }
        guard value.count == buffer.capacity else { throw P9Errno(EINVAL) }
        if value.isEmpty && buffer.capacity == 0 && flags & 2 != 0 {
            try check { p9sys_removexattr(file.procPath, name) }
            return
        }
        try check {
            value.withUnsafeBytes { p9sys_setxattr(file.procPath, name, $0.baseAddress, UInt($0.count), flags) }
        }
    }

    private func getXattr(_ file: Descriptor, _ name: String) throws(P9Errno) -> [UInt8] {
        for _ in 0..<3 {
            let size = try check { p9sys_getxattr(file.procPath, name, nil, 0) }
            var value = [UInt8](repeating: 0, count: min(size, xattrMaxSize))
            let n = value.withUnsafeMutableBytes { p9sys_getxattr(file.procPath, name, $0.baseAddress, UInt($0.count)) }
            if n >= 0 { return Array(value[0..<n]) }
            if errno != ERANGE { throw .current }
        }
        throw P9Errno(ERANGE)
    }

    private func listUserXattrs(_ file: Descriptor) throws(P9Errno) -> [UInt8] {
        var list: [UInt8] = []
        for attempt in 0..<3 {
            let size = try check { p9sys_listxattr(file.procPath, nil, 0) }
            var raw = [UInt8](repeating: 0, count: min(size, xattrMaxSize))
            let n = raw.withUnsafeMutableBytes {
                p9sys_listxattr(file.procPath, $0.baseAddress?.assumingMemoryBound(to: CChar.self), UInt($0.count))
            }
            if n >= 0 {
                list = Array(raw[0..<n])
                break
            }
            if errno != ERANGE || attempt == 2 { throw .current }
        }
        // Keep the user.* names (each NUL-terminated).
        var kept: [UInt8] = []
        for name in list.split(separator: 0, omittingEmptySubsequences: true)
        where name.starts(with: Array("user.".utf8)) {
            kept += name
            kept.append(0)
        }
        return kept
    }
}
