import Testing

@testable import P9

#if canImport(Glibc)
    import Glibc
#endif

/// One of every request and reply, with awkward values where they matter.
let sampleRequests: [P9Request] = {
    var set = P9SetAttributes()
    set.valid = 0x1FF
    set.mode = 0o644
    set.uid = 1000
    set.gid = 100
    set.size = 1 << 40
    set.atimeSeconds = 1
    set.atimeNanoseconds = 2
    set.mtimeSeconds = 3
    set.mtimeNanoseconds = 4
    let lock = P9Lock(type: P9.lockWrite, flags: 1, start: 10, length: 0, procID: 42, clientID: "guest")
    return [
        .version(msize: 131072, version: "9P2000.L"),
        .auth(afid: 5, uname: "user", aname: "share", uid: 1000),
        .attach(fid: 0, afid: P9.noFid, uname: "", aname: "", uid: 0xFFFF_FFFF),
        .flush(oldTag: 7),
        .walk(fid: 1, newFid: 2, names: []),
        .walk(fid: 1, newFid: 2, names: (0..<16).map { "n\($0)" }),
        .read(fid: 3, offset: UInt64.max, count: 4096),
        .write(fid: 3, offset: 9, data: [1, 2, 3, 0, 255]),
        .clunk(fid: 4),
        .remove(fid: 4),
        .statfs(fid: 4),
        .lopen(fid: 4, flags: 0o2),
        .lcreate(fid: 4, name: "é file", flags: 0o101, mode: 0o600, gid: 10),
        .symlink(fid: 4, name: "l", target: "../x", gid: 10),
        .mknod(dirFid: 4, name: "fifo", mode: 0o010644, major: 1, minor: 2, gid: 3),
        .rename(fid: 4, dirFid: 5, name: "new"),
        .readlink(fid: 4),
        .getattr(fid: 4, mask: P9.getattrBasic),
        .setattr(fid: 4, attributes: set),
        .xattrwalk(fid: 4, newFid: 5, name: "user.x"),
        .xattrcreate(fid: 4, name: "user.x", size: 10, flags: 1),
        .readdir(fid: 4, offset: 0x7FFF_FFFF_FFFF_FFFF, count: 8192),
        .fsync(fid: 4, datasync: 1),
        .lock(fid: 4, lock: lock),
        .getlock(fid: 4, lock: P9Lock(type: P9.lockRead, start: 1, length: 2, procID: 3, clientID: "c")),
        .link(dirFid: 4, fid: 5, name: "hard"),
        .mkdir(dirFid: 4, name: "d", mode: 0o755, gid: 0),
        .renameat(oldDirFid: 4, oldName: "a", newDirFid: 5, newName: "b"),
        .unlinkat(dirFid: 4, name: "a", flags: P9.unlinkRemoveDirectory),
    ]
}()

let sampleResponses: [P9Response] = {
    var attributes = P9Attributes()
    attributes.qid = P9Qid(type: P9.qidDirectory, version: 1, path: 99)
    attributes.mode = 0o040755
    attributes.uid = 1
    attributes.gid = 2
    attributes.nlink = 3
    attributes.size = 4096
    attributes.mtimeSeconds = 1_700_000_000
    attributes.dataVersion = 7
    var statfs = P9StatFS()
    statfs.type = 0xEF53
    statfs.blockSize = 4096
    statfs.blocks = 1000
    statfs.fsid = 0x1234_5678_9ABC
    statfs.nameLength = 255
    var entries: [UInt8] = []
    P9DirEntry(qid: P9Qid(type: 0, path: 5), offset: 77, type: 8, name: Array("file".utf8)).encode(into: &entries)
    let qid = P9Qid(type: P9.qidFile, version: 0, path: 12345)
    return [
        .version(msize: 8192, version: "9P2000.L"),
        .auth(qid: qid),
        .attach(qid: qid),
        .error(errno: 2),
        .flush,
        .walk(qids: [qid, qid]),
        .read(data: [9, 8, 7]),
        .write(count: 3),
        .clunk,
        .remove,
        .statfs(statfs),
        .lopen(qid: qid, iounit: 8168),
        .lcreate(qid: qid, iounit: 0),
        .symlink(qid: qid),
        .mknod(qid: qid),
        .rename,
        .readlink(target: "/abs/target"),
        .getattr(attributes),
        .setattr,
        .xattrwalk(size: 10),
        .xattrcreate,
        .readdir(data: entries),
        .fsync,
        .lock(status: P9.lockBlocked),
        .getlock(P9Lock(type: P9.lockUnlock, start: 0, length: 0, procID: 0, clientID: "c")),
        .link,
        .mkdir(qid: qid),
        .renameat,
        .unlinkat,
    ]
}()

@Suite("P9 codec")
struct P9CodecTests {
    // MARK: - Round trips

    @Test("every request survives encode and decode", arguments: sampleRequests)
    func requestRoundTrip(_ request: P9Request) throws {
        let frame = request.encode(tag: 0x1234)
        let (tag, decoded) = try P9Request.decode(frame: frame)
        #expect(tag == 0x1234)
        #expect(decoded == request)
    }

    @Test("every reply survives encode and decode", arguments: sampleResponses)
    func responseRoundTrip(_ response: P9Response) throws {
        let frame = response.encode(tag: 3)
        let (tag, decoded) = try P9Response.decode(frame: frame)
        #expect(tag == 3)
        #expect(decoded == response)
    }

    @Test("the samples cover every message type")
    func coverage() {
        let covered = Set(sampleRequests.map(\.type.rawValue) + sampleResponses.map(\.type.rawValue))
        let all = Set(P9MessageType.allCases.map(\.rawValue)).subtracting([P9MessageType.tlerror.rawValue])
        #expect(all.subtracting(covered).isEmpty)
    }

    @Test("wire layout of Twalk and Rlerror matches the protocol byte for byte")
    func wireLayout() {
        #expect(
            P9Request.walk(fid: 1, newFid: 2, names: ["ab"]).encode(tag: 5) == [
                21, 0, 0, 0, 110, 5, 0, 1, 0, 0, 0, 2, 0, 0, 0, 1, 0, 2, 0, 97, 98,
            ])
        #expect(P9Response.error(errno: 13).encode(tag: 9) == [11, 0, 0, 0, 7, 9, 0, 13, 0, 0, 0])
    }

    @Test("directory entries decode back")
    func dirEntries() throws {
        var data: [UInt8] = []
        let a = P9DirEntry(qid: P9Qid(type: P9.qidDirectory, path: 1), offset: 10, type: 4, name: Array("dir".utf8))
        let b = P9DirEntry(qid: P9Qid(type: P9.qidSymlink, path: 2), offset: 20, type: 10, name: [0xFF, 0x41])
        a.encode(into: &data)
        b.encode(into: &data)
        #expect(data.count == a.encodedSize + b.encodedSize)
        #expect(try P9DirEntry.decodeAll(data) == [a, b])
        #expect(throws: P9DecodeError.self) { try P9DirEntry.decodeAll(Array(data.dropLast())) }
    }

    // MARK: - Malformed frames

    @Test("every truncation of every request is an error, never a crash", arguments: sampleRequests)
    func truncatedRequests(_ request: P9Request) throws {
        let frame = request.encode(tag: 1)
        for length in 0..<frame.count {
            var cut = Array(frame[0..<length])
            // With size[4] patched to the cut length too, so only the body is short.
            if cut.count >= 4 {
                let size = UInt32(cut.count)
                for i in 0..<4 { cut[i] = UInt8(truncatingIfNeeded: size >> (8 * i)) }
            }
            if case .fsync(let fid, _) = request, length == frame.count - 4 {
                // Tfsync without datasync[4] is what kernels before 5.x send.
                #expect(try P9Request.decode(frame: cut).request == .fsync(fid: fid, datasync: 0))
                continue
            }
            #expect(throws: P9DecodeError.self) { try P9Request.decode(frame: cut) }
            #expect(throws: P9DecodeError.self) { try P9Request.decode(frame: Array(frame[0..<length])) }
        }
    }

    @Test("every truncation of every reply is an error", arguments: sampleResponses)
    func truncatedResponses(_ response: P9Response) {
        let frame = response.encode(tag: 1)
        for length in 0..<frame.count {
            #expect(throws: P9DecodeError.self) { try P9Response.decode(frame: Array(frame[0..<length])) }
        }
    }

    @Test("a header shorter than 7 bytes is refused")
    func shortHeader() {
        #expect(throws: P9DecodeError.self) { try P9Header(frame: [7, 0, 0]) }
        #expect(throws: P9DecodeError.sizeTooSmall(6)) { try P9Header(frame: [6, 0, 0, 0, 100, 0, 0]) }
    }

    @Test("size[4] larger or smaller than the data is refused")
    func sizeMismatch() {
        var frame = P9Request.clunk(fid: 1).encode(tag: 1)
        frame[0] += 1
        #expect(throws: P9DecodeError.sizeMismatch(declared: UInt32(frame[0]), actual: frame.count)) {
            try P9Request.decode(frame: frame)
        }
        frame[0] -= 2
        #expect(throws: P9DecodeError.self) { try P9Request.decode(frame: frame) }
    }

    @Test("a string length past the end is refused")
    func stringPastEnd() {
        var frame = P9Request.mkdir(dirFid: 1, name: "abc", mode: 0, gid: 0).encode(tag: 1)
        // The name's len[2] sits after fid[4].
        frame[11] = 200
        #expect(throws: P9DecodeError.self) { try P9Request.decode(frame: frame) }
    }

    @Test("Twalk with 17 names is refused")
    func tooManyWalkNames() {
        let frame = P9Request.walk(fid: 0, newFid: 1, names: (0..<17).map { "n\($0)" }).encode(tag: 1)
        #expect(throws: P9DecodeError.tooManyWalkNames(17)) { try P9Request.decode(frame: frame) }
    }

    @Test("Twrite whose count runs past the frame is refused")
    func writeCountPastEnd() {
        var frame = P9Request.write(fid: 1, offset: 0, data: [1, 2, 3]).encode(tag: 1)
        // count[4] after size, type, tag, fid, offset: byte 19.
        frame[19] = 0xFF
        frame[20] = 0xFF
        #expect(throws: P9DecodeError.self) { try P9Request.decode(frame: frame) }
    }

    @Test("Rread whose count runs past the frame is refused")
    func readCountPastEnd() {
        var frame = P9Response.read(data: [1, 2]).encode(tag: 1)
        frame[7] = 3
        #expect(throws: P9DecodeError.self) { try P9Response.decode(frame: frame) }
    }

    @Test("trailing bytes, unknown types, wrong direction and bad UTF-8 are refused")
    func otherMalformed() {
        var frame = P9Request.clunk(fid: 1).encode(tag: 1) + [0]
        frame[0] += 1
        #expect(throws: P9DecodeError.trailingBytes(1, type: .tclunk)) { try P9Request.decode(frame: frame) }
        #expect(throws: P9DecodeError.unknownType(112)) { try P9Request.decode(frame: [7, 0, 0, 0, 112, 0, 0]) }
        #expect(throws: P9DecodeError.wrongDirection(.rclunk)) {
            try P9Request.decode(frame: P9Response.clunk.encode(tag: 1))
        }
        #expect(throws: P9DecodeError.wrongDirection(.tclunk)) {
            try P9Response.decode(frame: P9Request.clunk(fid: 1).encode(tag: 1))
        }
        var bad = P9Request.mkdir(dirFid: 1, name: "ab", mode: 0, gid: 0).encode(tag: 1)
        bad[13] = 0xFF
        #expect(throws: P9DecodeError.invalidUTF8(field: "name")) { try P9Request.decode(frame: bad) }
    }

    @Test("random bytes never crash the decoders")
    func randomBytes() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<20000 {
            let count = Int.random(in: 0..<64, using: &generator)
            var frame = (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
            if count >= 7 {
                frame[0] = UInt8(count)
                frame[1] = 0
                frame[2] = 0
                frame[3] = 0
                frame[4] = P9MessageType.allCases.randomElement(using: &generator)?.rawValue ?? 0
            }
            _ = try? P9Request.decode(frame: frame)
            _ = try? P9Response.decode(frame: frame)
        }
    }

    // MARK: - Framing

    /// What a frame reader makes of `bytes` followed by the end of the stream.
    func readFrame(_ bytes: [UInt8], limit: UInt32) throws(P9FrameError) -> [UInt8]? {
        var ends: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &ends) == 0 else { throw .transport(errno: errno) }
        defer {
            close(ends[0])
            close(ends[1])
        }
        _ = p9WriteAll(ends[1], bytes)
        shutdown(ends[1], Int32(SHUT_WR))
        return try P9FrameReader(fd: ends[0]).next(limit: limit)
    }

    @Test("the frame reader reads whole frames and refuses sizes above the limit or below the header")
    func frameReader() throws {
        let frame = P9Request.clunk(fid: 9).encode(tag: 2)
        #expect(try readFrame(frame, limit: 8192) == frame)
        #expect(try readFrame([], limit: 8192) == nil)
        #expect(throws: P9FrameError.badSize(UInt32(frame.count), limit: 8)) { try readFrame(frame, limit: 8) }
        #expect(throws: P9FrameError.badSize(3, limit: 8192)) { try readFrame([3, 0, 0, 0], limit: 8192) }
        #expect(throws: P9FrameError.badSize(0x1000_0000, limit: 8192)) {
            try readFrame([0, 0, 0, 0x10], limit: 8192)
        }
        #expect(throws: P9FrameError.truncated) { try readFrame([20, 0, 0, 0, 1], limit: 8192) }
        #expect(throws: P9FrameError.truncated) { try readFrame([20, 0], limit: 8192) }
    }
}
