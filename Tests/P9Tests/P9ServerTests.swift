import CP9System
import Foundation
import Testing

@testable import P9

#if canImport(Glibc)
    import Glibc
#endif

/// A server on a fresh sandbox's share and a client already past Tversion/Tattach (fid 0).
func session(readOnly: Bool = false, configure: (inout P9Server.Configuration) -> Void = { _ in }) throws -> (
    P9Sandbox, P9TestClient
) {
    let sandbox = try P9Sandbox()
    var configuration = P9Server.Configuration(root: sandbox.share, readOnly: readOnly)
    configure(&configuration)
    let client = try P9TestClient(server: try P9Server(configuration: configuration))
    try client.start()
    return (sandbox, client)
}

@Suite("P9 server operations")
struct P9ServerTests {
    // MARK: - Session

    @Test("Tversion agrees on the smaller msize and refuses other versions")
    func version() throws {
        let sandbox = try P9Sandbox()
        let server = try P9Server(configuration: .init(root: sandbox.share, maxMessageSize: 65536))
        let client = try P9TestClient(server: server)
        #expect(
            try client.call(.version(msize: 1 << 20, version: "9P2000.L"))
                == .version(msize: 65536, version: "9P2000.L"))
        #expect(
            try client.call(.version(msize: 8192, version: "9P2000.L")) == .version(msize: 8192, version: "9P2000.L"))
        #expect(
            try client.call(.version(msize: 8192, version: "9P2000.u")) == .version(msize: 8192, version: "unknown"))
        #expect(try client.call(.version(msize: 100, version: "9P2000.L")) == .error(errno: UInt32(EINVAL)))
    }

    @Test("requests before Tversion, Tauth and a second attach of a used fid fail")
    func attachRules() throws {
        let sandbox = try P9Sandbox()
        let server = try P9Server(configuration: .init(root: sandbox.share, exportName: "share"))
        let client = try P9TestClient(server: server)
        #expect(try client.errorOf(.attach(fid: 0, afid: P9.noFid, uname: "", aname: "", uid: 0)) == EPROTO)
        _ = try client.call(.version(msize: 8192, version: P9.version))
        #expect(try client.errorOf(.auth(afid: 1, uname: "u", aname: "", uid: 0)) == EOPNOTSUPP)
        #expect(try client.errorOf(.attach(fid: 0, afid: P9.noFid, uname: "", aname: "other", uid: 0)) == ENOENT)
        #expect(try client.errorOf(.attach(fid: 0, afid: P9.noFid, uname: "", aname: "share", uid: 0)) == nil)
        #expect(try client.errorOf(.attach(fid: 0, afid: P9.noFid, uname: "", aname: "", uid: 0)) == EBADF)
        #expect(try client.errorOf(.attach(fid: 1, afid: P9.noFid, uname: "", aname: "", uid: 0)) == nil)
        // Tversion drops every fid.
        _ = try client.call(.version(msize: 8192, version: P9.version))
        #expect(try client.errorOf(.getattr(fid: 0, mask: P9.getattrBasic)) == EBADF)
    }

    @Test("a malformed body gets Rlerror(EINVAL) and the session goes on; an oversized frame ends it")
    func malformedOverTheWire() throws {
        let (_, client) = try session()
        var frame = P9Request.mkdir(dirFid: 0, name: "abc", mode: 0, gid: 0).encode(tag: 77)
        frame[11] = 200
        try client.sendRaw(frame)
        let reply = try client.receive()
        #expect(reply?.tag == 77)
        #expect(reply?.response == .error(errno: UInt32(EINVAL)))
        try client.sendRaw([7, 0, 0, 0, 112, 78, 0])
        #expect(try client.receive()?.response == .error(errno: UInt32(EOPNOTSUPP)))
        #expect(try client.errorOf(.getattr(fid: 0, mask: 0)) == nil)
        try client.sendRaw([0xFF, 0xFF, 0xFF, 0x7F, 100, 0, 0])
        // The server closes without a reply (a reset, with the unread bytes it left behind).
        let after = Result { try client.receive() }
        if case .success(let reply) = after { #expect(reply == nil) }
        for _ in 0..<200 where client.sessionEnd == nil { usleep(5000) }
        #expect(client.sessionEnd == .protocolError("frame size 2147483647, msize 65536"))
    }

    // MARK: - Reading

    @Test("walk, getattr, lopen and read agree with the host")
    func walkAndRead() throws {
        let (sandbox, client) = try session()
        try FileManager.default.createDirectory(atPath: sandbox.share + "/a/b", withIntermediateDirectories: true)
        let text = String(repeating: "0123456789", count: 1000)
        try sandbox.write(sandbox.share + "/a/b/file", text)
        let qids = try client.walk("a/b/file", to: 1)
        #expect(qids.map(\.type) == [P9.qidDirectory, P9.qidDirectory, P9.qidFile])
        let host = try #require(lstatOf(sandbox.share + "/a/b/file"))
        #expect(qids[2].path == UInt64(host.st_ino))
        let a = try client.getattr(1)
        #expect(a.size == UInt64(text.utf8.count))
        #expect(a.mode == UInt32(host.st_mode))
        #expect(a.nlink == 1)
        #expect(a.mtimeSeconds == UInt64(host.st_mtim.tv_sec))
        guard case .lopen(let qid, let iounit) = try client.ok(.lopen(fid: 1, flags: LFlags.readOnly)) else {
            Issue.record("no Rlopen")
            return
        }
        #expect(qid == qids[2])
        #expect(iounit == client.msize - 24)
        #expect(try client.readAll(1) == bytes(text))
        // Reads are clamped to msize.
        guard case .read(let big) = try client.ok(.read(fid: 1, offset: 0, count: 1 << 30)) else { return }
        #expect(big.count == min(text.utf8.count, Int(client.msize) - 11))
        // Opening twice, or reading an unopened fid, fails.
        #expect(try client.errorOf(.lopen(fid: 1, flags: 0)) == EINVAL)
        #expect(try client.errorOf(.read(fid: 0, offset: 0, count: 10)) == EBADF)
        // Walks: a missing first name fails; a missing later one stops short and makes no fid.
        #expect(try client.errorOf(.walk(fid: 0, newFid: 2, names: ["missing"])) == ENOENT)
        #expect(try client.call(.walk(fid: 0, newFid: 2, names: ["a", "missing"])).walkCount == 1)
        #expect(try client.errorOf(.getattr(fid: 2, mask: 0)) == EBADF)
        // A clone, and a walk onto an existing fid.
        #expect(try client.call(.walk(fid: 1, newFid: 3, names: [])).walkCount == 0)
        #expect(try client.errorOf(.walk(fid: 0, newFid: 3, names: ["a"])) == EBADF)
        #expect(try client.call(.walk(fid: 3, newFid: 3, names: [".."])).walkCount == 1)
        #expect(try client.getattr(3).qid == qids[1])
        #expect(try client.errorOf(.walk(fid: 0, newFid: 4, names: ["a/b"])) == EINVAL)
        // Cloning an open fid onto itself keeps it open.
        #expect(try client.call(.walk(fid: 1, newFid: 1, names: [])).walkCount == 0)
        guard case .read(let again) = try client.ok(.read(fid: 1, offset: 0, count: 10)) else { return }
        #expect(again == Array(bytes(text).prefix(10)))
        try client.ok(.clunk(fid: 1))
        #expect(try client.errorOf(.clunk(fid: 1)) == EBADF)
    }

    @Test("readdir lists the host directory, across small replies, with offsets that continue")
    func readdir() throws {
        let (sandbox, client) = try session()
        var names: Set<String> = [".", ".."]
        for i in 0..<100 {
            let name = "entry-\(i)-" + String(repeating: "x", count: i)
            try sandbox.write(sandbox.share + "/" + name, "\(i)")
            names.insert(name)
        }
        try FileManager.default.createDirectory(atPath: sandbox.share + "/sub", withIntermediateDirectories: false)
        try FileManager.default.createSymbolicLink(atPath: sandbox.share + "/link", withDestinationPath: "sub")
        names.formUnion(["sub", "link"])
        try client.walk("", to: 1)
        try client.open(1, flags: LFlags.readOnly | LFlags.directory)
        let entries = try client.readdirAll(1, count: 300)
        #expect(Set(entries.map { String(decoding: $0.name, as: UTF8.self) }) == names)
        #expect(entries.count == names.count)
        let sub = try #require(entries.first { $0.name == Array("sub".utf8) })
        #expect(sub.type == 4)
        #expect(sub.qid.type == P9.qidDirectory)
        let link = try #require(entries.first { $0.name == Array("link".utf8) })
        #expect(link.qid.type == P9.qidSymlink)
        // Starting again from 0 gives the same list; a count too small for one entry gives none.
        #expect(try client.readdirAll(1).count == names.count)
        #expect(try client.call(.readdir(fid: 1, offset: 0, count: 10)) == .readdir(data: []))
    }

    // MARK: - Writing

    @Test("lcreate, write, fsync and read back through the host")
    func createAndWrite() throws {
        let (sandbox, client) = try session()
        try client.walk("", to: 1)
        guard
            case .lcreate(let qid, _) = try client.ok(
                .lcreate(fid: 1, name: "new", flags: LFlags.readWrite, mode: 0o640, gid: 0))
        else { return }
        #expect(qid.type == P9.qidFile)
        #expect(try client.call(.write(fid: 1, offset: 0, data: bytes("hello "))) == .write(count: 6))
        #expect(try client.call(.write(fid: 1, offset: 6, data: bytes("world"))) == .write(count: 5))
        try client.ok(.fsync(fid: 1, datasync: 0))
        try client.ok(.fsync(fid: 1, datasync: 1))
        #expect(sandbox.read(sandbox.share + "/new") == "hello world")
        #expect(try client.readAll(1) == bytes("hello world"))
        let host = try #require(lstatOf(sandbox.share + "/new"))
        #expect(host.st_mode & 0o7777 == 0o640)
        // The fid now names the new file.
        #expect(try client.getattr(1).qid == qid)
        // O_EXCL on an existing name fails; an fsync of an unopened fid fails.
        try client.walk("", to: 2)
        #expect(try client.errorOf(.lcreate(fid: 2, name: "new", flags: 0o202, mode: 0o600, gid: 0)) == EEXIST)
        #expect(try client.errorOf(.fsync(fid: 2, datasync: 0)) == EBADF)
        // Writing through a read-only open fails.
        try client.walk("new", to: 3)
        try client.open(3, flags: LFlags.readOnly)
        #expect(try client.errorOf(.write(fid: 3, offset: 0, data: [1])) == EBADF)
        try client.walk("new", to: 4)
        try client.open(4, flags: LFlags.writeOnly | LFlags.truncate)
        #expect(sandbox.read(sandbox.share + "/new") == "")
    }

    @Test("mkdir, symlink, readlink, link and mknod make what the host then sees")
    func creating() throws {
        let (sandbox, client) = try session()
        guard case .mkdir(let dirQid) = try client.ok(.mkdir(dirFid: 0, name: "dir", mode: 0o750, gid: 0)) else {
            return
        }
        #expect(dirQid.type == P9.qidDirectory)
        #expect(try #require(lstatOf(sandbox.share + "/dir")).st_mode == S_IFDIR | 0o750)
        guard case .symlink(let linkQid) = try client.ok(.symlink(fid: 0, name: "l", target: "dir/../x", gid: 0))
        else { return }
        #expect(linkQid.type == P9.qidSymlink)
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: sandbox.share + "/l") == "dir/../x")
        try client.walk("l", to: 1)
        #expect(try client.call(.readlink(fid: 1)) == .readlink(target: "dir/../x"))
        #expect(try client.errorOf(.readlink(fid: 0)) == EINVAL)
        try sandbox.write(sandbox.share + "/file", "data")
        try client.walk("file", to: 2)
        try client.ok(.link(dirFid: 0, fid: 2, name: "hard"))
        #expect(try #require(lstatOf(sandbox.share + "/file")).st_nlink == 2)
        #expect(sandbox.read(sandbox.share + "/hard") == "data")
        #expect(try client.getattr(2).nlink == 2)
        guard
            case .mknod(let fifo) = try client.ok(
                .mknod(dirFid: 0, name: "fifo", mode: 0o010600, major: 0, minor: 0, gid: 0))
        else { return }
        #expect(fifo.type == P9.qidFile)
        #expect(try #require(lstatOf(sandbox.share + "/fifo")).st_mode == S_IFIFO | 0o600)
        try client.ok(.mknod(dirFid: 0, name: "regular", mode: 0o100644, major: 0, minor: 0, gid: 0))
        #expect(try #require(lstatOf(sandbox.share + "/regular")).st_mode == S_IFREG | 0o644)
        // No device nodes, whatever the server's privileges.
        #expect(
            try client.errorOf(.mknod(dirFid: 0, name: "null", mode: 0o020666, major: 1, minor: 3, gid: 0)) == EPERM)
        #expect(lstatOf(sandbox.share + "/null") == nil)
        #expect(try client.errorOf(.mkdir(dirFid: 0, name: "dir", mode: 0o755, gid: 0)) == EEXIST)
    }

    @Test("rename, renameat, unlinkat and remove")
    func renamingAndRemoving() throws {
        let (sandbox, client) = try session()
        try FileManager.default.createDirectory(atPath: sandbox.share + "/d1", withIntermediateDirectories: false)
        try FileManager.default.createDirectory(atPath: sandbox.share + "/d2", withIntermediateDirectories: false)
        try sandbox.write(sandbox.share + "/d1/f", "f")
        try client.walk("d1/f", to: 1)
        try client.walk("d2", to: 2)
        try client.ok(.rename(fid: 1, dirFid: 2, name: "g"))
        #expect(sandbox.read(sandbox.share + "/d2/g") == "f")
        #expect(lstatOf(sandbox.share + "/d1/f") == nil)
        try client.walk("d1", to: 3)
        try client.ok(.renameat(oldDirFid: 2, oldName: "g", newDirFid: 3, newName: "h"))
        #expect(sandbox.read(sandbox.share + "/d1/h") == "f")
        try client.ok(.unlinkat(dirFid: 3, name: "h", flags: 0))
        #expect(lstatOf(sandbox.share + "/d1/h") == nil)
        #expect(try client.errorOf(.unlinkat(dirFid: 0, name: "d1", flags: 0)) == EISDIR)
        try client.ok(.unlinkat(dirFid: 0, name: "d2", flags: P9.unlinkRemoveDirectory))
        #expect(lstatOf(sandbox.share + "/d2") == nil)
        // Tremove unlinks and clunks; removing the root is refused (and clunks too).
        try sandbox.write(sandbox.share + "/d1/gone", "x")
        try client.walk("d1/gone", to: 4)
        try client.ok(.remove(fid: 4))
        #expect(lstatOf(sandbox.share + "/d1/gone") == nil)
        #expect(try client.errorOf(.getattr(fid: 4, mask: 0)) == EBADF)
        try client.ok(.remove(fid: 3))
        #expect(lstatOf(sandbox.share + "/d1") == nil)
        try client.walk("", to: 5)
        #expect(try client.errorOf(.remove(fid: 5)) == EBUSY)
        #expect(lstatOf(sandbox.share) != nil)
        #expect(try client.errorOf(.rename(fid: 0, dirFid: 0, name: "x")) == EBUSY)
    }

    // MARK: - Attributes

    @Test("setattr changes mode, size and times; statfs matches the host")
    func attributes() throws {
        let (sandbox, client) = try session()
        try sandbox.write(sandbox.share + "/f", "0123456789")
        try client.walk("f", to: 1)
        var a = P9SetAttributes()
        a.valid =
            P9.setattrMode | P9.setattrSize | P9.setattrMTime | P9.setattrMTimeSet | P9.setattrATime
            | P9.setattrATimeSet
        a.mode = 0o600
        a.size = 4
        a.mtimeSeconds = 1_000_000_000
        a.mtimeNanoseconds = 5
        a.atimeSeconds = 900_000_000
        try client.ok(.setattr(fid: 1, attributes: a))
        let host = try #require(lstatOf(sandbox.share + "/f"))
        #expect(host.st_mode & 0o7777 == 0o600)
        #expect(host.st_size == 4)
        #expect(host.st_mtim.tv_sec == 1_000_000_000)
        #expect(host.st_mtim.tv_nsec == 5)
        #expect(host.st_atim.tv_sec == 900_000_000)
        let after = try client.getattr(1)
        #expect(after.size == 4)
        #expect(after.mtimeSeconds == 1_000_000_000)
        var owner = P9SetAttributes()
        owner.valid = P9.setattrUID | P9.setattrGID
        owner.uid = 1234
        owner.gid = 5678
        try client.ok(.setattr(fid: 1, attributes: owner))
        #expect(try #require(lstatOf(sandbox.share + "/f")).st_uid == (geteuid() == 0 ? 1234 : getuid()))
        guard case .statfs(let fs) = try client.ok(.statfs(fid: 1)) else { return }
        var host2 = statvfs()
        #expect(statvfs(sandbox.share, &host2) == 0)
        #expect(UInt64(fs.blockSize) == UInt64(host2.f_bsize))
        #expect(fs.blocks == UInt64(host2.f_blocks))
        #expect(UInt64(fs.nameLength) == UInt64(host2.f_namemax))
    }

    @Test("the id mapping applies to ownership reported and set")
    func idMapping() throws {
        let (sandbox, client) = try session { configuration in
            configuration.idMapping = P9IDMapping(
                hostUID: { $0 + 100_000 }, guestUID: { $0 &- 100_000 }, hostGID: { $0 + 200_000 },
                guestGID: { $0 &- 200_000 })
        }
        try sandbox.write(sandbox.share + "/f", "x")
        #expect(chown(sandbox.share + "/f", 100_007, 200_009) == 0 || geteuid() != 0)
        try client.walk("f", to: 1)
        if geteuid() == 0 {
            let a = try client.getattr(1)
            #expect(a.uid == 7)
            #expect(a.gid == 9)
            var owner = P9SetAttributes()
            owner.valid = P9.setattrUID | P9.setattrGID
            owner.uid = 42
            owner.gid = 43
            try client.ok(.setattr(fid: 1, attributes: owner))
            let host = try #require(lstatOf(sandbox.share + "/f"))
            #expect(host.st_uid == 100_042)
            #expect(host.st_gid == 200_043)
        }
    }

    // MARK: - Locks and xattrs

    @Test("lock and getlock: conflicts between two opens answer BLOCKED and show the holder")
    func locks() throws {
        let (sandbox, client) = try session()
        try sandbox.write(sandbox.share + "/f", "locked")
        try client.walk("f", to: 1)
        try client.walk("f", to: 2)
        try client.open(1, flags: LFlags.readWrite)
        try client.open(2, flags: LFlags.readWrite)
        let write = P9Lock(type: P9.lockWrite, start: 0, length: 0, procID: 1, clientID: "a")
        #expect(try client.call(.lock(fid: 1, lock: write)) == .lock(status: P9.lockSuccess))
        guard case .getlock(let held) = try client.ok(.getlock(fid: 2, lock: write)) else { return }
        #expect(held.type == P9.lockWrite)
        #expect(try client.call(.lock(fid: 2, lock: write)) == .lock(status: P9.lockBlocked))
        var unlock = write
        unlock.type = P9.lockUnlock
        #expect(try client.call(.lock(fid: 1, lock: unlock)) == .lock(status: P9.lockSuccess))
        guard case .getlock(let free) = try client.ok(.getlock(fid: 2, lock: write)) else { return }
        #expect(free.type == P9.lockUnlock)
        #expect(try client.call(.lock(fid: 2, lock: write)) == .lock(status: P9.lockSuccess))
        #expect(try client.errorOf(.lock(fid: 0, lock: write)) == EBADF)
        var bad = write
        bad.type = 9
        #expect(try client.errorOf(.lock(fid: 1, lock: bad)) == EINVAL)
    }

    @Test("user xattrs: create, list, read, remove; other namespaces refused")
    func xattrs() throws {
        let (sandbox, client) = try session()
        try sandbox.write(sandbox.share + "/f", "x")
        try client.walk("f", to: 1)
        try client.ok(.xattrcreate(fid: 1, name: "user.colour", size: 4, flags: 0))
        try client.ok(.write(fid: 1, offset: 0, data: bytes("bl")))
        try client.ok(.write(fid: 1, offset: 2, data: bytes("ue")))
        try client.ok(.clunk(fid: 1))
        var value = [UInt8](repeating: 0, count: 16)
        let n = Int(p9sys_getxattr(sandbox.share + "/f", "user.colour", &value, 16))
        #expect(n == 4)
        #expect(Array(value.prefix(max(0, n))) == bytes("blue"))
        try client.walk("f", to: 2)
        guard case .xattrwalk(let size) = try client.ok(.xattrwalk(fid: 2, newFid: 3, name: "user.colour")) else {
            return
        }
        #expect(size == 4)
        #expect(try client.readAll(3) == bytes("blue"))
        guard case .xattrwalk(let listSize) = try client.ok(.xattrwalk(fid: 2, newFid: 4, name: "")) else { return }
        #expect(try client.readAll(4) == bytes("user.colour\0"))
        #expect(listSize == 12)
        #expect(try client.errorOf(.xattrwalk(fid: 2, newFid: 5, name: "user.none")) == ENODATA)
        #expect(try client.errorOf(.xattrwalk(fid: 2, newFid: 5, name: "trusted.x")) == ENODATA)
        #expect(try client.errorOf(.xattrcreate(fid: 2, name: "trusted.x", size: 1, flags: 0)) == EOPNOTSUPP)
        #expect(try client.errorOf(.xattrcreate(fid: 2, name: "user.big", size: 1 << 20, flags: 0)) == E2BIG)
        // A short write fails at clunk and sets nothing.
        try client.walk("f", to: 6)
        try client.ok(.xattrcreate(fid: 6, name: "user.short", size: 4, flags: 0))
        try client.ok(.write(fid: 6, offset: 0, data: [1]))
        #expect(try client.errorOf(.clunk(fid: 6)) == EINVAL)
        #expect(p9sys_getxattr(sandbox.share + "/f", "user.short", nil, 0) < 0)
        // Writing past the declared size fails.
        try client.walk("f", to: 7)
        try client.ok(.xattrcreate(fid: 7, name: "user.x", size: 2, flags: 0))
        #expect(try client.errorOf(.write(fid: 7, offset: 1, data: [1, 2])) == ENOSPC)
        // Removal: size 0 with XATTR_REPLACE, as Linux's removexattr sends it.
        try client.walk("f", to: 8)
        try client.ok(.xattrcreate(fid: 8, name: "user.colour", size: 0, flags: 2))
        try client.ok(.clunk(fid: 8))
        #expect(p9sys_getxattr(sandbox.share + "/f", "user.colour", nil, 0) < 0)
    }
}

extension P9Response {
    /// Rwalk's qid count (-1 for anything else).
    var walkCount: Int {
        if case .walk(let qids) = self { return qids.count }
        return -1
    }
}

@Suite("P9 set-ID bits")
struct P9SetIDTests {
    @Test("with allowsSetID off, set-user-ID and set-group-ID bits never reach the host")
    func dropped() throws {
        let (sandbox, client) = try session { $0.allowsSetID = false }
        try client.walk("", to: 1)
        try client.ok(.lcreate(fid: 1, name: "prog", flags: LFlags.readWrite, mode: 0o4755, gid: 0))
        #expect(lstatOf(sandbox.share + "/prog").map { $0.st_mode & 0o7777 } == 0o755)
        try client.ok(.mkdir(dirFid: 0, name: "dir", mode: 0o2775, gid: 0))
        #expect(lstatOf(sandbox.share + "/dir").map { $0.st_mode & 0o7777 } == 0o775)
        try client.walk("prog", to: 2)
        var a = P9SetAttributes()
        a.valid = P9.setattrMode
        a.mode = 0o6711
        try client.ok(.setattr(fid: 2, attributes: a))
        #expect(lstatOf(sandbox.share + "/prog").map { $0.st_mode & 0o7777 } == 0o711)
    }

    @Test("by default (a server of one's own files, as root) they pass")
    func kept() throws {
        let (sandbox, client) = try session()
        try client.walk("", to: 1)
        try client.ok(.lcreate(fid: 1, name: "prog", flags: LFlags.readWrite, mode: 0o4755, gid: 0))
        #expect(lstatOf(sandbox.share + "/prog").map { $0.st_mode & 0o7777 } == 0o4755)
    }
}
