// The 9P2000.L messages as values: T-messages (requests, ``P9Request``) and R-messages
// (replies, ``P9Response``), with the small records they carry. Wire layouts follow the
// Linux client (net/9p/protocol.c, include/net/9p/9p.h); the codec lives in
// P9Request+Codec.swift and P9Response+Codec.swift.

// MARK: - Constants

/// Protocol constants of 9P2000.L.
public enum P9 {
    /// The only version this server speaks.
    public static let version = "9P2000.L"
    /// The tag of Tversion/Rversion.
    public static let noTag: UInt16 = 0xFFFF
    /// "No fid" (Tattach's afid when there is no authentication).
    public static let noFid: UInt32 = 0xFFFF_FFFF
    /// The most names one Twalk may carry (MAXWELEM).
    public static let maxWalkNames = 16
    /// size[4] type[1] tag[2].
    public static let headerSize = 7
    /// Bytes of an Rread/Twrite around its data (size, type, tag, fid, offset, count), as the
    /// Linux client computes iounit: P9_IOHDRSZ.
    public static let ioHeaderSize = 24
    /// The smallest msize the server accepts in Tversion.
    public static let minimumMessageSize: UInt32 = 4096

    /// Qid types.
    public static let qidDirectory: UInt8 = 0x80
    public static let qidSymlink: UInt8 = 0x02
    public static let qidFile: UInt8 = 0x00

    /// Rgetattr's valid mask for the basic fields (P9_STATS_BASIC): mode through blocks.
    public static let getattrBasic: UInt64 = 0x0000_07FF

    /// Tsetattr's valid bits.
    public static let setattrMode: UInt32 = 0x001
    public static let setattrUID: UInt32 = 0x002
    public static let setattrGID: UInt32 = 0x004
    public static let setattrSize: UInt32 = 0x008
    public static let setattrATime: UInt32 = 0x010
    public static let setattrMTime: UInt32 = 0x020
    public static let setattrCTime: UInt32 = 0x040
    public static let setattrATimeSet: UInt32 = 0x080
    public static let setattrMTimeSet: UInt32 = 0x100

    /// Tlock types and Rlock statuses.
    public static let lockRead: UInt8 = 0
    public static let lockWrite: UInt8 = 1
    public static let lockUnlock: UInt8 = 2
    public static let lockSuccess: UInt8 = 0
    public static let lockBlocked: UInt8 = 1
    public static let lockError: UInt8 = 2

    /// Tunlinkat's flag for directories (AT_REMOVEDIR).
    public static let unlinkRemoveDirectory: UInt32 = 0x200
}

/// Message type numbers (the byte after size[4]).
public enum P9MessageType: UInt8, Sendable, CaseIterable {
    case tlerror = 6
    case rlerror = 7
    case tstatfs = 8
    case rstatfs = 9
    case tlopen = 12
    case rlopen = 13
    case tlcreate = 14
    case rlcreate = 15
    case tsymlink = 16
    case rsymlink = 17
    case tmknod = 18
    case rmknod = 19
    case trename = 20
    case rrename = 21
    case treadlink = 22
    case rreadlink = 23
    case tgetattr = 24
    case rgetattr = 25
    case tsetattr = 26
    case rsetattr = 27
    case txattrwalk = 30
    case rxattrwalk = 31
    case txattrcreate = 32
    case rxattrcreate = 33
    case treaddir = 40
    case rreaddir = 41
    case tfsync = 50
    case rfsync = 51
    case tlock = 52
    case rlock = 53
    case tgetlock = 54
    case rgetlock = 55
    case tlink = 70
    case rlink = 71
    case tmkdir = 72
    case rmkdir = 73
    case trenameat = 74
    case rrenameat = 75
    case tunlinkat = 76
    case runlinkat = 77
    case tversion = 100
    case rversion = 101
    case tauth = 102
    case rauth = 103
    case tattach = 104
    case rattach = 105
    case tflush = 108
    case rflush = 109
    case twalk = 110
    case rwalk = 111
    case tread = 116
    case rread = 117
    case twrite = 118
    case rwrite = 119
    case tclunk = 120
    case rclunk = 121
    case tremove = 122
    case rremove = 123
}

// MARK: - Records

/// A file's server-side identity: type (directory, symlink, file), version and a unique path.
public struct P9Qid: Equatable, Hashable, Sendable {
    public var type: UInt8
    public var version: UInt32
    public var path: UInt64

    public init(type: UInt8, version: UInt32 = 0, path: UInt64) {
        self.type = type
        self.version = version
        self.path = path
    }

    /// Wire size: type[1] version[4] path[8].
    public static let size = 13
}

/// Rgetattr's body.
public struct P9Attributes: Equatable, Sendable {
    public var valid: UInt64 = P9.getattrBasic
    public var qid = P9Qid(type: 0, path: 0)
    public var mode: UInt32 = 0
    public var uid: UInt32 = 0
    public var gid: UInt32 = 0
    public var nlink: UInt64 = 0
    public var rdev: UInt64 = 0
    public var size: UInt64 = 0
    public var blockSize: UInt64 = 0
    public var blocks: UInt64 = 0
    public var atimeSeconds: UInt64 = 0
    public var atimeNanoseconds: UInt64 = 0
    public var mtimeSeconds: UInt64 = 0
    public var mtimeNanoseconds: UInt64 = 0
    public var ctimeSeconds: UInt64 = 0
    public var ctimeNanoseconds: UInt64 = 0
    public var btimeSeconds: UInt64 = 0
    public var btimeNanoseconds: UInt64 = 0
    public var generation: UInt64 = 0
    public var dataVersion: UInt64 = 0

    public init() {}
}

/// Tsetattr's body: `valid` (``P9/setattrMode`` ...) says which fields apply.
public struct P9SetAttributes: Equatable, Sendable {
    public var valid: UInt32 = 0
    public var mode: UInt32 = 0
    public var uid: UInt32 = 0
    public var gid: UInt32 = 0
    public var size: UInt64 = 0
    public var atimeSeconds: UInt64 = 0
    public var atimeNanoseconds: UInt64 = 0
    public var mtimeSeconds: UInt64 = 0
    public var mtimeNanoseconds: UInt64 = 0

    public init() {}
}

/// Rstatfs's body (struct statfs, as the Linux client reads it).
public struct P9StatFS: Equatable, Sendable {
    public var type: UInt32 = 0
    public var blockSize: UInt32 = 0
    public var blocks: UInt64 = 0
    public var blocksFree: UInt64 = 0
    public var blocksAvailable: UInt64 = 0
    public var files: UInt64 = 0
    public var filesFree: UInt64 = 0
    public var fsid: UInt64 = 0
    public var nameLength: UInt32 = 0

    public init() {}
}

/// A byte-range lock as Tlock, Tgetlock and Rgetlock carry it (`flags` is Tlock's only).
public struct P9Lock: Equatable, Sendable {
    public var type: UInt8
    public var flags: UInt32
    public var start: UInt64
    /// 0 means "to the end of the file".
    public var length: UInt64
    public var procID: UInt32
    public var clientID: String

    public init(type: UInt8, flags: UInt32 = 0, start: UInt64, length: UInt64, procID: UInt32, clientID: String) {
        self.type = type
        self.flags = flags
        self.start = start
        self.length = length
        self.procID = procID
        self.clientID = clientID
    }
}

/// One Rreaddir entry: qid[13] offset[8] type[1] name[s]. `offset` is an opaque cookie: the
/// Treaddir offset that continues after this entry.
public struct P9DirEntry: Equatable, Sendable {
    public var qid: P9Qid
    public var offset: UInt64
    public var type: UInt8
    /// The name's bytes as the host file system has them (not necessarily UTF-8).
    public var name: [UInt8]

    public init(qid: P9Qid, offset: UInt64, type: UInt8, name: [UInt8]) {
        self.qid = qid
        self.offset = offset
        self.type = type
        self.name = name
    }

    /// Bytes this entry takes in an Rreaddir.
    public var encodedSize: Int { P9Qid.size + 8 + 1 + 2 + name.count }
}

// MARK: - Messages

/// A T-message (client to server).
public enum P9Request: Equatable, Sendable {
    case version(msize: UInt32, version: String)
    case auth(afid: UInt32, uname: String, aname: String, uid: UInt32)
    case attach(fid: UInt32, afid: UInt32, uname: String, aname: String, uid: UInt32)
    case flush(oldTag: UInt16)
    case walk(fid: UInt32, newFid: UInt32, names: [String])
    case read(fid: UInt32, offset: UInt64, count: UInt32)
    case write(fid: UInt32, offset: UInt64, data: [UInt8])
    case clunk(fid: UInt32)
    case remove(fid: UInt32)
    case statfs(fid: UInt32)
    case lopen(fid: UInt32, flags: UInt32)
    case lcreate(fid: UInt32, name: String, flags: UInt32, mode: UInt32, gid: UInt32)
    case symlink(fid: UInt32, name: String, target: String, gid: UInt32)
    case mknod(dirFid: UInt32, name: String, mode: UInt32, major: UInt32, minor: UInt32, gid: UInt32)
    case rename(fid: UInt32, dirFid: UInt32, name: String)
    case readlink(fid: UInt32)
    case getattr(fid: UInt32, mask: UInt64)
    case setattr(fid: UInt32, attributes: P9SetAttributes)
    case xattrwalk(fid: UInt32, newFid: UInt32, name: String)
    case xattrcreate(fid: UInt32, name: String, size: UInt64, flags: UInt32)
    case readdir(fid: UInt32, offset: UInt64, count: UInt32)
    case fsync(fid: UInt32, datasync: UInt32)
    case lock(fid: UInt32, lock: P9Lock)
    case getlock(fid: UInt32, lock: P9Lock)
    case link(dirFid: UInt32, fid: UInt32, name: String)
    case mkdir(dirFid: UInt32, name: String, mode: UInt32, gid: UInt32)
    case renameat(oldDirFid: UInt32, oldName: String, newDirFid: UInt32, newName: String)
    case unlinkat(dirFid: UInt32, name: String, flags: UInt32)
}

/// An R-message (server to client).
public enum P9Response: Equatable, Sendable {
    case version(msize: UInt32, version: String)
    case auth(qid: P9Qid)
    case attach(qid: P9Qid)
    /// Rlerror: a Linux errno.
    case error(errno: UInt32)
    case flush
    case walk(qids: [P9Qid])
    case read(data: [UInt8])
    case write(count: UInt32)
    case clunk
    case remove
    case statfs(P9StatFS)
    case lopen(qid: P9Qid, iounit: UInt32)
    case lcreate(qid: P9Qid, iounit: UInt32)
    case symlink(qid: P9Qid)
    case mknod(qid: P9Qid)
    case rename
    case readlink(target: String)
    case getattr(P9Attributes)
    case setattr
    case xattrwalk(size: UInt64)
    case xattrcreate
    /// Rreaddir: the packed entries (see ``P9DirEntry``).
    case readdir(data: [UInt8])
    case fsync
    case lock(status: UInt8)
    case getlock(P9Lock)
    case link
    case mkdir(qid: P9Qid)
    case renameat
    case unlinkat
}
