// Wire form of R-messages: encoded by the server, decoded by clients (and the tests).

extension P9Response {
    // MARK: - Encoding

    /// The message type this reply is sent as.
    public var type: P9MessageType {
        switch self {
        case .version: .rversion
        case .auth: .rauth
        case .attach: .rattach
        case .error: .rlerror
        case .flush: .rflush
        case .walk: .rwalk
        case .read: .rread
        case .write: .rwrite
        case .clunk: .rclunk
        case .remove: .rremove
        case .statfs: .rstatfs
        case .lopen: .rlopen
        case .lcreate: .rlcreate
        case .symlink: .rsymlink
        case .mknod: .rmknod
        case .rename: .rrename
        case .readlink: .rreadlink
        case .getattr: .rgetattr
        case .setattr: .rsetattr
        case .xattrwalk: .rxattrwalk
        case .xattrcreate: .rxattrcreate
        case .readdir: .rreaddir
        case .fsync: .rfsync
        case .lock: .rlock
        case .getlock: .rgetlock
        case .link: .rlink
        case .mkdir: .rmkdir
        case .renameat: .rrenameat
        case .unlinkat: .runlinkat
        }
    }

    /// The whole frame for this reply with `tag`.
    public func encode(tag: UInt16) -> [UInt8] {
        var capacity = 64
        if case .read(let data) = self { capacity += data.count }
        if case .readdir(let data) = self { capacity += data.count }
        var w = P9Writer(type: type, tag: tag, capacity: capacity)
        switch self {
        case .version(let msize, let version):
            w.u32(msize)
            w.string(version)
        case .auth(let qid), .attach(let qid), .symlink(let qid), .mknod(let qid), .mkdir(let qid):
            w.qid(qid)
        case .error(let errno):
            w.u32(errno)
        case .flush, .clunk, .remove, .rename, .setattr, .xattrcreate, .fsync, .link, .renameat, .unlinkat:
            break
        case .walk(let qids):
            w.u16(UInt16(truncatingIfNeeded: qids.count))
            for qid in qids { w.qid(qid) }
        case .read(let data), .readdir(let data):
            w.u32(UInt32(truncatingIfNeeded: data.count))
            w.data(data)
        case .write(let count):
            w.u32(count)
        case .statfs(let s):
            w.u32(s.type)
            w.u32(s.blockSize)
            w.u64(s.blocks)
            w.u64(s.blocksFree)
            w.u64(s.blocksAvailable)
            w.u64(s.files)
            w.u64(s.filesFree)
            w.u64(s.fsid)
            w.u32(s.nameLength)
        case .lopen(let qid, let iounit), .lcreate(let qid, let iounit):
            w.qid(qid)
            w.u32(iounit)
        case .readlink(let target):
            w.string(target)
        case .getattr(let a):
            w.u64(a.valid)
            w.qid(a.qid)
            w.u32(a.mode)
            w.u32(a.uid)
            w.u32(a.gid)
            for value in [
                a.nlink, a.rdev, a.size, a.blockSize, a.blocks, a.atimeSeconds, a.atimeNanoseconds,
                a.mtimeSeconds, a.mtimeNanoseconds, a.ctimeSeconds, a.ctimeNanoseconds, a.btimeSeconds,
                a.btimeNanoseconds, a.generation, a.dataVersion,
            ] {
                w.u64(value)
            }
        case .xattrwalk(let size):
            w.u64(size)
        case .lock(let status):
            w.u8(status)
        case .getlock(let lock):
            w.u8(lock.type)
            w.u64(lock.start)
            w.u64(lock.length)
            w.u32(lock.procID)
            w.string(lock.clientID)
        }
        return w.finish()
    }

    // MARK: - Decoding

    /// Decodes one whole reply frame (size[4] included), with the same checks as
    /// ``P9Request/decode(frame:)``.
    public static func decode(frame: [UInt8]) throws(P9DecodeError) -> (tag: UInt16, response: P9Response) {
        let header = try P9Header(frame: frame)
        guard let type = P9MessageType(rawValue: header.type) else { throw .unknownType(header.type) }
        var r = P9Reader(frame, from: P9.headerSize)
        let response: P9Response
        switch type {
        case .rversion: response = .version(msize: try r.u32("msize"), version: try r.string("version"))
        case .rauth: response = .auth(qid: try r.qid())
        case .rattach: response = .attach(qid: try r.qid())
        case .rlerror: response = .error(errno: try r.u32("ecode"))
        case .rflush: response = .flush
        case .rwalk:
            let count = Int(try r.u16("nwqid"))
            guard count <= P9.maxWalkNames else { throw .tooManyWalkNames(count) }
            var qids: [P9Qid] = []
            for _ in 0..<count { qids.append(try r.qid("wqid")) }
            response = .walk(qids: qids)
        case .rread, .rreaddir:
            let count = Int(try r.u32("count"))
            let data = try r.data(count, "data")
            response = type == .rread ? .read(data: data) : .readdir(data: data)
        case .rwrite: response = .write(count: try r.u32("count"))
        case .rclunk: response = .clunk
        case .rremove: response = .remove
        case .rstatfs:
            var s = P9StatFS()
            s.type = try r.u32("type")
            s.blockSize = try r.u32("bsize")
            s.blocks = try r.u64("blocks")
            s.blocksFree = try r.u64("bfree")
            s.blocksAvailable = try r.u64("bavail")
            s.files = try r.u64("files")
            s.filesFree = try r.u64("ffree")
            s.fsid = try r.u64("fsid")
            s.nameLength = try r.u32("namelen")
            response = .statfs(s)
        case .rlopen: response = .lopen(qid: try r.qid(), iounit: try r.u32("iounit"))
        case .rlcreate: response = .lcreate(qid: try r.qid(), iounit: try r.u32("iounit"))
        case .rsymlink: response = .symlink(qid: try r.qid())
        case .rmknod: response = .mknod(qid: try r.qid())
        case .rrename: response = .rename
        case .rreadlink: response = .readlink(target: try r.string("target"))
        case .rgetattr:
            var a = P9Attributes()
            a.valid = try r.u64("valid")
            a.qid = try r.qid()
            a.mode = try r.u32("mode")
            a.uid = try r.u32("uid")
            a.gid = try r.u32("gid")
            a.nlink = try r.u64("nlink")
            a.rdev = try r.u64("rdev")
            a.size = try r.u64("size")
            a.blockSize = try r.u64("blksize")
            a.blocks = try r.u64("blocks")
            a.atimeSeconds = try r.u64("atime_sec")
            a.atimeNanoseconds = try r.u64("atime_nsec")
            a.mtimeSeconds = try r.u64("mtime_sec")
            a.mtimeNanoseconds = try r.u64("mtime_nsec")
            a.ctimeSeconds = try r.u64("ctime_sec")
            a.ctimeNanoseconds = try r.u64("ctime_nsec")
            a.btimeSeconds = try r.u64("btime_sec")
            a.btimeNanoseconds = try r.u64("btime_nsec")
            a.generation = try r.u64("gen")
            a.dataVersion = try r.u64("data_version")
            response = .getattr(a)
        case .rsetattr: response = .setattr
        case .rxattrwalk: response = .xattrwalk(size: try r.u64("size"))
        case .rxattrcreate: response = .xattrcreate
        case .rfsync: response = .fsync
        case .rlock: response = .lock(status: try r.u8("status"))
        case .rgetlock:
            let lockType = try r.u8("type")
            let start = try r.u64("start")
            let length = try r.u64("length")
            let procID = try r.u32("proc_id")
            let clientID = try r.string("client_id")
            response = .getlock(
                P9Lock(type: lockType, start: start, length: length, procID: procID, clientID: clientID))
        case .rlink: response = .link
        case .rmkdir: response = .mkdir(qid: try r.qid())
        case .rrenameat: response = .renameat
        case .runlinkat: response = .unlinkat
        default: throw .wrongDirection(type)
        }
        try r.finish(type)
        return (header.tag, response)
    }
}
