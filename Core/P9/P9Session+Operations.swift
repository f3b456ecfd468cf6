import CP9System

#if canImport(Glibc)
    import Glibc
#endif

// Every request but Tversion and Tflush, run on a worker thread. Each returns its reply or
// throws the errno that becomes Rlerror.

extension P9Session {
    // MARK: - Dispatch

    func handle(_ request: P9Request) throws(P9Errno) -> P9Response {
        switch request {
        case .version, .flush:
            // Answered by the reader; never queued.
            throw P9Errno(EINVAL)
        case .auth:
            throw P9Errno(EOPNOTSUPP)
        case .attach(let fid, let afid, _, let aname, let uid):
            return try attach(fid: fid, afid: afid, aname: aname, uid: uid)
        case .walk(let fid, let newFid, let names):
            return try walk(fid: fid, newFid: newFid, names: names)
        case .read(let fid, let offset, let count):
            return try read(fid: fid, offset: offset, count: count)
        case .write(let fid, let offset, let data):
            return try write(fid: fid, offset: offset, data: data)
        case .clunk(let fid):
            return try clunk(fid: fid)
        case .remove(let fid):
            return try remove(fid: fid)
        case .statfs(let fid):
            return try statfs(fid: fid)
        case .lopen(let fid, let flags):
            return try lopen(fid: fid, flags: flags)
        case .lcreate(let fid, let name, let flags, let mode, let gid):
            return try lcreate(fid: fid, name: name, flags: flags, mode: mode, gid: gid)
        case .symlink(let fid, let name, let target, let gid):
            return try symlink(dirFid: fid, name: name, target: target, gid: gid)
        case .mknod(let dirFid, let name, let mode, _, _, let gid):
            return try mknod(dirFid: dirFid, name: name, mode: mode, gid: gid)
        case .rename(let fid, let dirFid, let name):
            return try rename(fid: fid, dirFid: dirFid, name: name)
        case .readlink(let fid):
            return try readlink(fid: fid)
        case .getattr(let fid, _):
            return try getattr(fid: fid)
        case .setattr(let fid, let attributes):
            return try setattr(fid: fid, attributes)
        case .xattrwalk(let fid, let newFid, let name):
            return try xattrwalk(fid: fid, newFid: newFid, name: name)
        case .xattrcreate(let fid, let name, let size, let flags):
            return try xattrcreate(fid: fid, name: name, size: size, flags: flags)
        case .readdir(let fid, let offset, let count):
            return try readdir(fid: fid, offset: offset, count: count)
        case .fsync(let fid, let datasync):
            let descriptor = try lookup(fid).openDescriptor()
            try check { datasync != 0 ? fdatasync(descriptor.fd) : Glibc.fsync(descriptor.fd) }
            return .fsync
        case .lock(let fid, let lock):
            return try self.lock(fid: fid, lock)
        case .getlock(let fid, let lock):
            return try getlock(fid: fid, lock)
        case .link(let dirFid, let fid, let name):
            return try link(dirFid: dirFid, fid: fid, name: name)
        case .mkdir(let dirFid, let name, let mode, let gid):
            return try mkdir(dirFid: dirFid, name: name, mode: mode, gid: gid)
        case .renameat(let oldDirFid, let oldName, let newDirFid, let newName):
            return try renameat(oldDirFid: oldDirFid, oldName: oldName, newDirFid: newDirFid, newName: newName)
        case .unlinkat(let dirFid, let name, let flags):
            return try unlinkat(dirFid: dirFid, name: name, flags: flags)
        }
    }

    // MARK: - Fid table

    func lookup(_ fid: UInt32) throws(P9Errno) -> P9Fid {
        guard let found = fids.withLock({ $0[fid] }) else { throw P9Errno(EBADF) }
        return found
    }

    /// Adds `fid` as `id`; `id` must be free unless `replacing`.
    func install(_ id: UInt32, _ fid: P9Fid, replacing: Bool = false) throws(P9Errno) {
        let limit = configuration.maxFids
        let result: Int32 = fids.withLock { table in
            if table[id] != nil {
                guard replacing else { return EBADF }
            } else if table.count >= limit {
                return ENFILE
            }
            table[id] = fid
            return 0
        }
        if result != 0 { throw P9Errno(result) }
    }

    func requireWritable() throws(P9Errno) {
        if configuration.readOnly { throw P9Errno(EROFS) }
    }

    /// The most data one Rread/Rreaddir may carry under the negotiated msize.
    var maxReplyData: Int { Int(msize.load(ordering: .relaxed)) - 11 }

    /// What Rlopen/Rlcreate advertise as iounit.
    var iounit: UInt32 { msize.load(ordering: .relaxed) - UInt32(P9.ioHeaderSize) }

    // MARK: - Attach and walk

    private func attach(fid: UInt32, afid: UInt32, aname: String, uid: UInt32) throws(P9Errno) -> P9Response {
        guard afid == P9.noFid else { throw P9Errno(EINVAL) }
        if let exportName = configuration.exportName, !aname.isEmpty, aname != exportName {
            throw P9Errno(ENOENT)
        }
        let root = P9Fid(uid: uid, state: P9Fid.State(file: server.root, name: "", ancestors: []))
        try install(fid, root)
        return .attach(qid: server.rootStat.qid)
    }

    private func walk(fid: UInt32, newFid: UInt32, names: [String]) throws(P9Errno) -> P9Response {
        let start = try lookup(fid)
        // Cloning a fid onto itself changes nothing (and keeps it open if it is).
        if names.isEmpty && newFid == fid { return .walk(qids: []) }
        if newFid != fid, fids.withLock({ $0[newFid] != nil }) { throw P9Errno(EBADF) }
        var state = start.current
        state.use = .path
        var qids: [P9Qid] = []
        for name in names {
            do {
                try step(&state, name)
                qids.append(try state.file.stat().qid)
            } catch {
                // The first element failing is an error; a later one ends the walk short, and
                // newfid is not created.
                if qids.isEmpty { throw error }
                return .walk(qids: qids)
            }
        }
        try install(newFid, P9Fid(uid: start.uid, state: state), replacing: newFid == fid)
        return .walk(qids: qids)
    }

    /// One walk element: `..` pops the fid's own chain (staying at the root), anything else opens
    /// exactly one name beneath the current directory without following symlinks.
    private func step(_ state: inout P9Fid.State, _ name: String) throws(P9Errno) {
        if name == "." { return }
        if name == ".." {
            if let up = state.ancestors.popLast() {
                state.file = up.file
                state.name = up.name
            }
            return
        }
        try validateName(name)
        let child = try openPath(in: state.file, name)
        state.ancestors.append(P9Link(file: state.file, name: state.name))
        state.file = child
        state.name = name
    }

    private func clunk(fid id: UInt32) throws(P9Errno) -> P9Response {
        guard let fid = fids.withLock({ $0.removeValue(forKey: id) }) else { throw P9Errno(EBADF) }
        let state = fid.current
        if case .xattrWrite(let name, let flags, let buffer) = state.use {
            try commitXattr(file: state.file, name: name, flags: flags, buffer: buffer)
        }
        return .clunk
    }

    // MARK: - Attributes

    private func getattr(fid: UInt32) throws(P9Errno) -> P9Response {
        let st = try lookup(fid).file.stat()
        let map = configuration.idMapping
        var a = P9Attributes()
        a.valid = P9.getattrBasic
        a.qid = st.qid
        a.mode = st.mode
        a.uid = map.guestUID(UInt32(st.raw.st_uid))
        a.gid = map.guestGID(UInt32(st.raw.st_gid))
        a.nlink = UInt64(st.raw.st_nlink)
        a.rdev = UInt64(st.raw.st_rdev)
        a.size = UInt64(max(0, st.raw.st_size))
        a.blockSize = UInt64(max(0, st.raw.st_blksize))
        a.blocks = UInt64(max(0, st.raw.st_blocks))
        a.atimeSeconds = UInt64(bitPattern: Int64(st.raw.st_atim.tv_sec))
        a.atimeNanoseconds = UInt64(max(0, st.raw.st_atim.tv_nsec))
        a.mtimeSeconds = UInt64(bitPattern: Int64(st.raw.st_mtim.tv_sec))
        a.mtimeNanoseconds = UInt64(max(0, st.raw.st_mtim.tv_nsec))
        a.ctimeSeconds = UInt64(bitPattern: Int64(st.raw.st_ctim.tv_sec))
        a.ctimeNanoseconds = UInt64(max(0, st.raw.st_ctim.tv_nsec))
        return .getattr(a)
    }

    private func setattr(fid id: UInt32, _ a: P9SetAttributes) throws(P9Errno) -> P9Response {
        try requireWritable()
        let fid = try lookup(id)
        let state = fid.current
        let file = state.file
        let st = try file.stat()
        let map = configuration.idMapping
        if a.valid & P9.setattrMode != 0 {
            guard !st.isSymlink else { throw P9Errno(EOPNOTSUPP) }
            try check { chmod(file.procPath, mode_t(permissions(a.mode))) }
        }
        if a.valid & (P9.setattrUID | P9.setattrGID) != 0 {
            let uid = a.valid & P9.setattrUID != 0 ? map.hostUID(a.uid) : UInt32.max
            let gid = a.valid & P9.setattrGID != 0 ? map.hostGID(a.gid) : UInt32.max
            try check { fchownat(file.fd, "", uid, gid, P9SYS_AT_EMPTY_PATH | P9SYS_AT_SYMLINK_NOFOLLOW) }
        }
        if a.valid & P9.setattrSize != 0 {
            guard a.size <= UInt64(Int64.max) else { throw P9Errno(EFBIG) }
            guard st.isRegular else { throw P9Errno(st.isDirectory ? EISDIR : EINVAL) }
            if case .open(let descriptor, let flags) = state.use, flags & O_ACCMODE != O_RDONLY {
                try check { ftruncate(descriptor.fd, Int(a.size)) }
            } else {
                try check { truncate(file.procPath, Int(a.size)) }
            }
        }
        if a.valid & (P9.setattrATime | P9.setattrMTime) != 0 {
            func time(_ set: UInt32, _ given: UInt32, _ seconds: UInt64, _ nanoseconds: UInt64) -> timespec {
                if a.valid & set == 0 { return timespec(tv_sec: 0, tv_nsec: P9SYS_UTIME_OMIT) }
                if a.valid & given == 0 { return timespec(tv_sec: 0, tv_nsec: P9SYS_UTIME_NOW) }
                return timespec(tv_sec: Int(bitPattern: UInt(seconds)), tv_nsec: Int(nanoseconds % 1_000_000_000))
            }
            var times = [
                time(P9.setattrATime, P9.setattrATimeSet, a.atimeSeconds, a.atimeNanoseconds),
                time(P9.setattrMTime, P9.setattrMTimeSet, a.mtimeSeconds, a.mtimeNanoseconds),
            ]
            if st.isSymlink {
                // A symlink's own times: by name in its directory, never following it.
                guard let parent = state.parent else { throw P9Errno(EINVAL) }
                try check { utimensat(parent.fd, state.name, &times, P9SYS_AT_SYMLINK_NOFOLLOW) }
            } else {
                try check { utimensat(AT_FDCWD, file.procPath, &times, 0) }
            }
        }
        return .setattr
    }

    private func statfs(fid: UInt32) throws(P9Errno) -> P9Response {
        let file = try lookup(fid).file
        var s = p9sys_statfs()
        try check { p9sys_fstatfs(file.fd, &s) }
        var r = P9StatFS()
        r.type = s.type
        r.blockSize = s.block_size
        r.blocks = s.blocks
        r.blocksFree = s.blocks_free
        r.blocksAvailable = s.blocks_available
        r.files = s.files
        r.filesFree = s.files_free
        r.fsid = s.fsid
        r.nameLength = s.name_length
        return .statfs(r)
    }

    // MARK: - Open, read, write

    /// Host open(2) flags for 9P2000.L's (which are x86's numbers on every architecture).
    /// Only the access mode and flags that make sense for a reopened file pass; creation and
    /// symlink-following flags are the server's business.
    func hostOpenFlags(_ flags: UInt32) throws(P9Errno) -> Int32 {
        let access = flags & 3
        guard access != 3 else { throw P9Errno(EINVAL) }
        var host = Int32(access)
        if flags & 0o1000 != 0 { host |= O_TRUNC }
        if flags & 0o2000 != 0 { host |= O_APPEND }
        if flags & 0o10000 != 0 { host |= P9SYS_O_DSYNC }
        if flags & 0o4000000 != 0 { host |= P9SYS_O_SYNC }
        if flags & 0o200000 != 0 { host |= P9SYS_O_DIRECTORY }
        return host
    }

    private func lopen(fid id: UInt32, flags: UInt32) throws(P9Errno) -> P9Response {
        let fid = try lookup(id)
        let state = fid.current
        guard case .path = state.use else { throw P9Errno(EINVAL) }
        let host = try hostOpenFlags(flags)
        if configuration.readOnly && (host & O_ACCMODE != O_RDONLY || host & O_TRUNC != 0) {
            throw P9Errno(EROFS)
        }
        let st = try state.file.stat()
        let opened = try reopen(state.file, flags: host, stat: st)
        fid.state.withLock { $0.use = .open(opened, flags: host) }
        return .lopen(qid: st.qid, iounit: iounit)
    }

    private func lcreate(fid id: UInt32, name: String, flags: UInt32, mode: UInt32, gid: UInt32) throws(P9Errno)
        -> P9Response
    {
        try requireWritable()
        try validateName(name)
        let fid = try lookup(id)
        let directory = fid.current
        guard case .path = directory.use else { throw P9Errno(EINVAL) }
        var host = try hostOpenFlags(flags) & ~P9SYS_O_DIRECTORY
        host |= O_CREAT | P9SYS_O_NOFOLLOW | P9SYS_O_CLOEXEC
        if flags & 0o200 != 0 { host |= O_EXCL }
        let fd = try check { p9sys_openat2(directory.file.fd, name, host, permissions(mode), confinedResolve) }
        let opened = Descriptor(fd)
        let pathFD = try check { open(opened.procPath, P9SYS_O_PATH | P9SYS_O_CLOEXEC) }
        let file = Descriptor(pathFD)
        adoptOwnership(file, uid: fid.uid, gid: gid, mode: mode)
        let st = try file.stat()
        fid.state.withLock { state in
            state.ancestors.append(P9Link(file: directory.file, name: directory.name))
            state.file = file
            state.name = name
            state.use = .open(opened, flags: host & ~(O_CREAT | O_EXCL | O_TRUNC))
        }
        return .lcreate(qid: st.qid, iounit: iounit)
    }

    private func read(fid id: UInt32, offset: UInt64, count: UInt32) throws(P9Errno) -> P9Response {
        let fid = try lookup(id)
        let wanted = min(Int(count), maxReplyData)
        switch fid.current.use {
        case .open(let descriptor, _):
            guard offset <= UInt64(Int64.max) else { throw P9Errno(EINVAL) }
            var data = [UInt8](repeating: 0, count: wanted)
            let n = try check {
                data.withUnsafeMutableBytes { pread(descriptor.fd, $0.baseAddress, wanted, Int(offset)) }
            }
            data.removeLast(wanted - n)
            return .read(data: data)
        case .xattrRead(let buffer):
            let data = buffer.bytes.withLock { bytes -> [UInt8] in
                guard offset < UInt64(bytes.count) else { return [] }
                let start = Int(offset)
                return Array(bytes[start..<min(bytes.count, start + wanted)])
            }
            return .read(data: data)
        default:
            throw P9Errno(EBADF)
        }
    }

    private func write(fid id: UInt32, offset: UInt64, data: [UInt8]) throws(P9Errno) -> P9Response {
        let fid = try lookup(id)
        switch fid.current.use {
        case .open(let descriptor, let flags):
            guard flags & O_ACCMODE != O_RDONLY else { throw P9Errno(EBADF) }
            guard offset <= UInt64(Int64.max) else { throw P9Errno(EINVAL) }
            let n = try check {
                data.withUnsafeBytes { pwrite(descriptor.fd, $0.baseAddress, data.count, Int(offset)) }
            }
            return .write(count: UInt32(n))
        case .xattrWrite(_, _, let buffer):
            guard offset <= UInt64(buffer.capacity), data.count <= buffer.capacity - Int(offset) else {
                throw P9Errno(ENOSPC)
            }
            buffer.bytes.withLock { bytes in
                let end = Int(offset) + data.count
                if bytes.count < end { bytes += [UInt8](repeating: 0, count: end - bytes.count) }
                bytes.replaceSubrange(Int(offset)..<end, with: data)
            }
            return .write(count: UInt32(data.count))
        default:
            throw P9Errno(EBADF)
        }
    }

    private func readdir(fid id: UInt32, offset: UInt64, count: UInt32) throws(P9Errno) -> P9Response {
        let fid = try lookup(id)
        let descriptor = try fid.openDescriptor()
        let limit = min(Int(count), maxReplyData)
        return try fid.directoryLock.withLock { _ throws(P9Errno) -> P9Response in
            // Offsets are the file system's own cookies (d_off), opaque to the client.
            try check { Int(lseek(descriptor.fd, Int(Int64(bitPattern: offset)), SEEK_SET)) }
            var raw = [UInt8](repeating: 0, count: max(limit, 512))
            let got = try check {
                raw.withUnsafeMutableBytes { p9sys_getdents64(descriptor.fd, $0.baseAddress, UInt($0.count)) }
            }
            var out: [UInt8] = []
            out.reserveCapacity(limit)
            var at = 0
            // struct linux_dirent64: d_ino[8] d_off[8] d_reclen[2] d_type[1] d_name (NUL-terminated).
            while at + 19 <= got {
                func u64(_ i: Int) -> UInt64 {
                    var value: UInt64 = 0
                    for k in (0..<8).reversed() { value = value << 8 | UInt64(raw[i + k]) }
                    return value
                }
                let inode = u64(at)
                let next = u64(at + 8)
                let length = Int(raw[at + 16]) | Int(raw[at + 17]) << 8
                let type = raw[at + 18]
                guard length >= 19, at + length <= got else { break }
                var nameEnd = at + 19
                while nameEnd < at + length && raw[nameEnd] != 0 { nameEnd += 1 }
                let qidType = type == 4 ? P9.qidDirectory : type == 10 ? P9.qidSymlink : P9.qidFile
                let entry = P9DirEntry(
                    qid: P9Qid(type: qidType, path: inode), offset: next, type: type,
                    name: Array(raw[(at + 19)..<nameEnd]))
                if out.count + entry.encodedSize > limit { break }
                entry.encode(into: &out)
                at += length
            }
            return .readdir(data: out)
        }
    }

    // MARK: - Creating

    /// The permission bits of `mode` that may reach the host (set-ID ones only if allowed).
    func permissions(_ mode: UInt32) -> UInt32 {
        mode & (configuration.allowsSetID ? 0o7777 : 0o1777)
    }

    /// Gives a new file the creator's owner (when the server runs as root) and group, then the
    /// mode asked for (the server's umask must not narrow it; chown may have cleared set-id
    /// bits). Best effort: a server without the privilege leaves its own ids.
    func adoptOwnership(_ file: Descriptor, uid: UInt32, gid: UInt32, mode: UInt32?) {
        let map = configuration.idMapping
        let owner = geteuid() == 0 && uid != P9.noFid ? map.hostUID(uid) : UInt32.max
        _ = fchownat(file.fd, "", owner, map.hostGID(gid), P9SYS_AT_EMPTY_PATH | P9SYS_AT_SYMLINK_NOFOLLOW)
        if let mode { _ = chmod(file.procPath, mode_t(permissions(mode))) }
    }

    private func mkdir(dirFid: UInt32, name: String, mode: UInt32, gid: UInt32) throws(P9Errno) -> P9Response {
        try requireWritable()
        try validateName(name)
        let directory = try lookup(dirFid)
        let dir = directory.file
        try check { mkdirat(dir.fd, name, mode_t(permissions(mode))) }
        let node = try openPath(in: dir, name)
        adoptOwnership(node, uid: directory.uid, gid: gid, mode: mode)
        return .mkdir(qid: try node.stat().qid)
    }

    private func symlink(dirFid: UInt32, name: String, target: String, gid: UInt32) throws(P9Errno) -> P9Response {
        try requireWritable()
        try validateName(name)
        guard !target.isEmpty, !target.utf8.contains(0) else { throw P9Errno(EINVAL) }
        let directory = try lookup(dirFid)
        let dir = directory.file
        // The target is stored, never followed by the server.
        try check { symlinkat(target, dir.fd, name) }
        let node = try openPath(in: dir, name)
        adoptOwnership(node, uid: directory.uid, gid: gid, mode: nil)
        return .symlink(qid: try node.stat().qid)
    }

    private func mknod(dirFid: UInt32, name: String, mode: UInt32, gid: UInt32) throws(P9Errno) -> P9Response {
        try requireWritable()
        try validateName(name)
        let type = mode & 0o170000
        // Regular files, FIFOs and sockets only: no device nodes on the host.
        guard type == 0o100000 || type == 0o010000 || type == 0o140000 else { throw P9Errno(EPERM) }
        let directory = try lookup(dirFid)
        let dir = directory.file
        try check { mknodat(dir.fd, name, mode_t(type | permissions(mode)), 0) }
        let node = try openPath(in: dir, name)
        adoptOwnership(node, uid: directory.uid, gid: gid, mode: mode)
        return .mknod(qid: try node.stat().qid)
    }

    private func readlink(fid: UInt32) throws(P9Errno) -> P9Response {
        let file = try lookup(fid).file
        guard try file.stat().isSymlink else { throw P9Errno(EINVAL) }
        let capacity = min(4096, Int(msize.load(ordering: .relaxed)) - P9.headerSize - 2)
        var buffer = [UInt8](repeating: 0, count: capacity)
        let n = try check {
            buffer.withUnsafeMutableBytes { p9sys_readlink_fd(file.fd, $0.baseAddress, UInt(capacity)) }
        }
        guard let target = String(validating: buffer[0..<n], as: UTF8.self) else { throw P9Errno(EILSEQ) }
        return .readlink(target: target)
    }

    private func link(dirFid: UInt32, fid: UInt32, name: String) throws(P9Errno) -> P9Response {
        try requireWritable()
        try validateName(name)
        let dir = try lookup(dirFid).file
        let source = try lookup(fid).current
        if try source.file.stat().isSymlink {
            // A hard link to the symlink itself, by name, never following it.
            guard let parent = source.parent else { throw P9Errno(EPERM) }
            try check { linkat(parent.fd, source.name, dir.fd, name, 0) }
        } else {
            // The fid's own inode (inside the export by construction), through its descriptor.
            try check { linkat(AT_FDCWD, source.file.procPath, dir.fd, name, P9SYS_AT_SYMLINK_FOLLOW) }
        }
        return .link
    }

    // MARK: - Renaming and removing

    private func rename(fid id: UInt32, dirFid: UInt32, name: String) throws(P9Errno) -> P9Response {
        try requireWritable()
        try validateName(name)
        let fid = try lookup(id)
        let source = fid.current
        guard let parent = source.parent else { throw P9Errno(EBUSY) }
        let target = try lookup(dirFid).current
        try check { p9sys_renameat2(parent.fd, source.name, target.file.fd, name, 0) }
        fid.state.withLock { state in
            state.ancestors = target.ancestors + [P9Link(file: target.file, name: target.name)]
            state.name = name
        }
        return .rename
    }

    private func renameat(oldDirFid: UInt32, oldName: String, newDirFid: UInt32, newName: String) throws(P9Errno)
        -> P9Response
    {
        try requireWritable()
        try validateName(oldName)
        try validateName(newName)
        let from = try lookup(oldDirFid).file
        let to = try lookup(newDirFid).file
        try check { p9sys_renameat2(from.fd, oldName, to.fd, newName, 0) }
        return .renameat
    }

    private func unlinkat(dirFid: UInt32, name: String, flags: UInt32) throws(P9Errno) -> P9Response {
        try requireWritable()
        try validateName(name)
        guard flags & ~P9.unlinkRemoveDirectory == 0 else { throw P9Errno(EINVAL) }
        let dir = try lookup(dirFid).file
        let hostFlags = flags & P9.unlinkRemoveDirectory != 0 ? P9SYS_AT_REMOVEDIR : 0
        try check { Glibc.unlinkat(dir.fd, name, hostFlags) }
        return .unlinkat
    }

    /// Tremove: unlinks the fid's file and clunks the fid, whether or not the unlink worked.
    private func remove(fid id: UInt32) throws(P9Errno) -> P9Response {
        guard let fid = fids.withLock({ $0.removeValue(forKey: id) }) else { throw P9Errno(EBADF) }
        try requireWritable()
        let state = fid.current
        guard let parent = state.parent else { throw P9Errno(EBUSY) }
        let st = try state.file.stat()
        // Only if the name still means this file (another client may have renamed it).
        var named = Glibc.stat()
        try check { fstatat(parent.fd, state.name, &named, P9SYS_AT_SYMLINK_NOFOLLOW) }
        guard HostStat(named).sameFile(as: st) else { throw P9Errno(ENOENT) }
        try check { Glibc.unlinkat(parent.fd, state.name, st.isDirectory ? P9SYS_AT_REMOVEDIR : 0) }
        return .remove
    }

    // MARK: - Locks

    /// Tlock as a non-blocking open-file-description lock on the fid's open descriptor; a
    /// conflicting lock answers BLOCKED (the Linux client waits and retries), never a wait here.
    private func lock(fid: UInt32, _ lock: P9Lock) throws(P9Errno) -> P9Response {
        let descriptor = try lookup(fid).openDescriptor()
        let type = try hostLockType(lock.type)
        let (start, length) = try hostRange(lock)
        if p9sys_ofd_setlock(descriptor.fd, type, start, length) == 0 { return .lock(status: P9.lockSuccess) }
        if errno == EAGAIN || errno == EACCES { return .lock(status: P9.lockBlocked) }
        throw .current
    }

    private func getlock(fid: UInt32, _ lock: P9Lock) throws(P9Errno) -> P9Response {
        let descriptor = try lookup(fid).openDescriptor()
        var type = try hostLockType(lock.type)
        var (start, length) = try hostRange(lock)
        var pid: Int32 = 0
        try check { p9sys_ofd_getlock(descriptor.fd, &type, &start, &length, &pid) }
        var reply = lock
        reply.flags = 0
        if type == P9SYS_F_UNLCK {
            reply.type = P9.lockUnlock
        } else {
            reply.type = type == P9SYS_F_RDLCK ? P9.lockRead : P9.lockWrite
            reply.start = UInt64(max(0, start))
            reply.length = UInt64(max(0, length))
            reply.procID = pid < 0 ? 0 : UInt32(pid)
        }
        return .getlock(reply)
    }

    private func hostLockType(_ type: UInt8) throws(P9Errno) -> Int16 {
        switch type {
        case P9.lockRead: return P9SYS_F_RDLCK
        case P9.lockWrite: return P9SYS_F_WRLCK
        case P9.lockUnlock: return P9SYS_F_UNLCK
        default: throw P9Errno(EINVAL)
        }
    }

    private func hostRange(_ lock: P9Lock) throws(P9Errno) -> (Int64, Int64) {
        guard lock.start <= UInt64(Int64.max), lock.length <= UInt64(Int64.max) else { throw P9Errno(EINVAL) }
        return (Int64(lock.start), Int64(lock.length))
    }
}
