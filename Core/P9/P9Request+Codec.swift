// Wire form of T-messages: decoded by the server, encoded by clients (and the tests).

extension P9Request {
    // MARK: - Decoding

    /// Decodes one whole frame (size[4] included). `frame.count` must equal size[4]; every
    /// length field inside is checked against the bytes left, and trailing bytes are an error.
    public static func decode(frame: [UInt8]) throws(P9DecodeError) -> (tag: UInt16, request: P9Request) {
        let header = try P9Header(frame: frame)
        guard let type = P9MessageType(rawValue: header.type) else { throw .unknownType(header.type) }
        var r = P9Reader(frame, from: P9.headerSize)
        let request: P9Request
        switch type {
        case .tversion:
            request = .version(msize: try r.u32("msize"), version: try r.string("version"))
        case .tauth:
            request = .auth(
                afid: try r.u32("afid"), uname: try r.string("uname"), aname: try r.string("aname"),
                uid: try r.u32("n_uname"))
        case .tattach:
            request = .attach(
                fid: try r.u32("fid"), afid: try r.u32("afid"), uname: try r.string("uname"),
                aname: try r.string("aname"), uid: try r.u32("n_uname"))
        case .tflush:
            request = .flush(oldTag: try r.u16("oldtag"))
        case .twalk:
            let fid = try r.u32("fid")
            let newFid = try r.u32("newfid")
            let count = Int(try r.u16("nwname"))
            guard count <= P9.maxWalkNames else { throw .tooManyWalkNames(count) }
            var names: [String] = []
            for _ in 0..<count { names.append(try r.string("wname")) }
            request = .walk(fid: fid, newFid: newFid, names: names)
        case .tread:
            request = .read(fid: try r.u32("fid"), offset: try r.u64("offset"), count: try r.u32("count"))
        case .twrite:
            let fid = try r.u32("fid")
            let offset = try r.u64("offset")
            let count = try r.u32("count")
            guard Int(count) <= r.remaining else {
                throw .truncated(field: "write data", needed: Int(count), available: r.remaining)
            }
            request = .write(fid: fid, offset: offset, data: try r.data(Int(count), "write data"))
        case .tclunk:
            request = .clunk(fid: try r.u32("fid"))
        case .tremove:
            request = .remove(fid: try r.u32("fid"))
        case .tstatfs:
            request = .statfs(fid: try r.u32("fid"))
        case .tlopen:
            request = .lopen(fid: try r.u32("fid"), flags: try r.u32("flags"))
        case .tlcreate:
            request = .lcreate(
                fid: try r.u32("fid"), name: try r.string("name"), flags: try r.u32("flags"),
                mode: try r.u32("mode"), gid: try r.u32("gid"))
        case .tsymlink:
            request = .symlink(
                fid: try r.u32("fid"), name: try r.string("name"), target: try r.string("symtgt"),
                gid: try r.u32("gid"))
        case .tmknod:
            request = .mknod(
                dirFid: try r.u32("dfid"), name: try r.string("name"), mode: try r.u32("mode"),
                major: try r.u32("major"), minor: try r.u32("minor"), gid: try r.u32("gid"))
        case .trename:
            request = .rename(fid: try r.u32("fid"), dirFid: try r.u32("dfid"), name: try r.string("name"))
        case .treadlink:
            request = .readlink(fid: try r.u32("fid"))
        case .tgetattr:
            request = .getattr(fid: try r.u32("fid"), mask: try r.u64("request_mask"))
        case .tsetattr:
            let fid = try r.u32("fid")
            var a = P9SetAttributes()
            a.valid = try r.u32("valid")
            a.mode = try r.u32("mode")
            a.uid = try r.u32("uid")
            a.gid = try r.u32("gid")
            a.size = try r.u64("size")
            a.atimeSeconds = try r.u64("atime_sec")
            a.atimeNanoseconds = try r.u64("atime_nsec")
            a.mtimeSeconds = try r.u64("mtime_sec")
            a.mtimeNanoseconds = try r.u64("mtime_nsec")
            request = .setattr(fid: fid, attributes: a)
        case .txattrwalk:
            request = .xattrwalk(fid: try r.u32("fid"), newFid: try r.u32("newfid"), name: try r.string("name"))
        case .txattrcreate:
            request = .xattrcreate(
                fid: try r.u32("fid"), name: try r.string("name"), size: try r.u64("attr_size"),
                flags: try r.u32("flags"))
        case .treaddir:
            request = .readdir(fid: try r.u32("fid"), offset: try r.u64("offset"), count: try r.u32("count"))
        case .tfsync:
            let fid = try r.u32("fid")
            // Kernels before 5.x sent no datasync field.
            var datasync: UInt32 = 0
            if r.remaining > 0 { datasync = try r.u32("datasync") }
            request = .fsync(fid: fid, datasync: datasync)
        case .tlock:
            let fid = try r.u32("fid")
            let lockType = try r.u8("type")
            let flags = try r.u32("flags")
            let start = try r.u64("start")
            let length = try r.u64("length")
            let procID = try r.u32("proc_id")
            let clientID = try r.string("client_id")
            request = .lock(
                fid: fid,
                lock: P9Lock(
                    type: lockType, flags: flags, start: start, length: length, procID: procID, clientID: clientID))
        case .tgetlock:
            let fid = try r.u32("fid")
            let lockType = try r.u8("type")
            let start = try r.u64("start")
            let length = try r.u64("length")
            let procID = try r.u32("proc_id")
            let clientID = try r.string("client_id")
            request = .getlock(
                fid: fid, lock: P9Lock(type: lockType, start: start, length: length, procID: procID, clientID: clientID)
            )
        case .tlink:
            request = .link(dirFid: try r.u32("dfid"), fid: try r.u32("fid"), name: try r.string("name"))
        case .tmkdir:
            request = .mkdir(
                dirFid: try r.u32("dfid"), name: try r.string("name"), mode: try r.u32("mode"), gid: try r.u32("gid"))
        case .trenameat:
            request = .renameat(
                oldDirFid: try r.u32("olddirfid"), oldName: try r.string("oldname"),
                newDirFid: try r.u32("newdirfid"), newName: try r.string("newname"))
        case .tunlinkat:
            request = .unlinkat(dirFid: try r.u32("dirfd"), name: try r.string("name"), flags: try r.u32("flags"))
        default:
            throw .wrongDirection(type)
        }
        try r.finish(type)
        return (header.tag, request)
    }

    // MARK: - Encoding

    /// The message type this request is sent as.
    public var type: P9MessageType {
        switch self {
        case .version: .tversion
        case .auth: .tauth
        case .attach: .tattach
        case .flush: .tflush
        case .walk: .twalk
        case .read: .tread
        case .write: .twrite
        case .clunk: .tclunk
        case .remove: .tremove
        case .statfs: .tstatfs
        case .lopen: .tlopen
        case .lcreate: .tlcreate
        case .symlink: .tsymlink
        case .mknod: .tmknod
        case .rename: .trename
        case .readlink: .treadlink
        case .getattr: .tgetattr
        case .setattr: .tsetattr
        case .xattrwalk: .txattrwalk
        case .xattrcreate: .txattrcreate
        case .readdir: .treaddir
        case .fsync: .tfsync
        case .lock: .tlock
        case .getlock: .tgetlock
        case .link: .tlink
        case .mkdir: .tmkdir
        case .renameat: .trenameat
        case .unlinkat: .tunlinkat
        }
    }

    /// The whole frame for this request with `tag`.
    public func encode(tag: UInt16) -> [UInt8] {
        var w = P9Writer(type: type, tag: tag)
        switch self {
        case .version(let msize, let version):
            w.u32(msize)
            w.string(version)
        case .auth(let afid, let uname, let aname, let uid):
            w.u32(afid)
            w.string(uname)
            w.string(aname)
            w.u32(uid)
        case .attach(let fid, let afid, let uname, let aname, let uid):
            w.u32(fid)
            w.u32(afid)
            w.string(uname)
            w.string(aname)
            w.u32(uid)
        case .flush(let oldTag):
            w.u16(oldTag)
        case .walk(let fid, let newFid, let names):
            w.u32(fid)
            w.u32(newFid)
            w.u16(UInt16(truncatingIfNeeded: names.count))
            for name in names { w.string(name) }
        case .read(let fid, let offset, let count), .readdir(let fid, let offset, let count):
            w.u32(fid)
            w.u64(offset)
            w.u32(count)
        case .write(let fid, let offset, let data):
            w.u32(fid)
            w.u64(offset)
            w.u32(UInt32(truncatingIfNeeded: data.count))
            w.data(data)
        case .clunk(let fid), .remove(let fid), .statfs(let fid), .readlink(let fid):
            w.u32(fid)
        case .lopen(let fid, let flags):
            w.u32(fid)
            w.u32(flags)
        case .lcreate(let fid, let name, let flags, let mode, let gid):
            w.u32(fid)
            w.string(name)
            w.u32(flags)
            w.u32(mode)
            w.u32(gid)
        case .symlink(let fid, let name, let target, let gid):
            w.u32(fid)
            w.string(name)
            w.string(target)
            w.u32(gid)
        case .mknod(let dirFid, let name, let mode, let major, let minor, let gid):
            w.u32(dirFid)
            w.string(name)
            w.u32(mode)
            w.u32(major)
            w.u32(minor)
            w.u32(gid)
        case .rename(let fid, let dirFid, let name):
            w.u32(fid)
            w.u32(dirFid)
            w.string(name)
        case .getattr(let fid, let mask):
            w.u32(fid)
            w.u64(mask)
        case .setattr(let fid, let a):
            w.u32(fid)
            w.u32(a.valid)
            w.u32(a.mode)
            w.u32(a.uid)
            w.u32(a.gid)
            w.u64(a.size)
            w.u64(a.atimeSeconds)
            w.u64(a.atimeNanoseconds)
            w.u64(a.mtimeSeconds)
            w.u64(a.mtimeNanoseconds)
        case .xattrwalk(let fid, let newFid, let name):
            w.u32(fid)
            w.u32(newFid)
            w.string(name)
        case .xattrcreate(let fid, let name, let size, let flags):
            w.u32(fid)
            w.string(name)
            w.u64(size)
            w.u32(flags)
        case .fsync(let fid, let datasync):
            w.u32(fid)
            w.u32(datasync)
        case .lock(let fid, let lock):
            w.u32(fid)
            w.u8(lock.type)
            w.u32(lock.flags)
            w.u64(lock.start)
            w.u64(lock.length)
            w.u32(lock.procID)
            w.string(lock.clientID)
        case .getlock(let fid, let lock):
            w.u32(fid)
            w.u8(lock.type)
            w.u64(lock.start)
            w.u64(lock.length)
            w.u32(lock.procID)
            w.string(lock.clientID)
        case .link(let dirFid, let fid, let name):
            w.u32(dirFid)
            w.u32(fid)
            w.string(name)
        case .mkdir(let dirFid, let name, let mode, let gid):
            w.u32(dirFid)
            w.string(name)
            w.u32(mode)
            w.u32(gid)
        case .renameat(let oldDirFid, let oldName, let newDirFid, let newName):
            w.u32(oldDirFid)
            w.string(oldName)
            w.u32(newDirFid)
            w.string(newName)
        case .unlinkat(let dirFid, let name, let flags):
            w.u32(dirFid)
            w.string(name)
            w.u32(flags)
        }
        return w.finish()
    }
}
