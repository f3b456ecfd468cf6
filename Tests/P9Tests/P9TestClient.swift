import Foundation
import Synchronization
import Testing

@testable import P9

#if canImport(Glibc)
    import Glibc
#endif

/// A failed expectation in the test client: the reply it got instead.
struct P9TestError: Error, CustomStringConvertible {
    let description: String
}

/// A scratch tree for one test: `base/share` is exported, `base/outside` is what no request may
/// reach (it holds `secret`, and the tests check it never changes). Removed on deinit.
final class P9Sandbox {
    let base: String
    var share: String { base + "/share" }
    var outside: String { base + "/outside" }
    static let secret = "outside-secret\n"

    init() throws {
        var template = Array("/tmp/p9-test-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw P9TestError(description: "mkdtemp: \(errno)") }
        base = String(cString: made)
        try FileManager.default.createDirectory(atPath: base + "/share", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: base + "/outside", withIntermediateDirectories: true)
        try write(outside + "/secret", P9Sandbox.secret)
    }

    deinit { try? FileManager.default.removeItem(atPath: base) }

    func write(_ path: String, _ text: String) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
    }

    func read(_ path: String) -> String? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return String(decoding: data, as: UTF8.self)
    }

    /// Every path under `root` with its type and contents: to compare before and after.
    func snapshot(_ root: String) -> [String: String] {
        var result: [String: String] = [:]
        guard let walker = FileManager.default.enumerator(atPath: root) else { return result }
        while let relative = walker.nextObject() as? String {
            let path = root + "/" + relative
            var st = stat()
            guard lstat(path, &st) == 0 else { continue }
            switch st.st_mode & S_IFMT {
            case S_IFLNK:
                result[relative] = "link:" + ((try? FileManager.default.destinationOfSymbolicLink(atPath: path)) ?? "?")
            case S_IFDIR:
                result[relative] = "dir:\(st.st_mode & 0o7777)"
            default:
                result[relative] = "file:\(st.st_mode & 0o7777):\(st.st_nlink):" + (read(path) ?? "?")
            }
        }
        return result
    }
}

/// A 9P client over a socketpair to a ``P9Server`` session on a background thread.
final class P9TestClient {
    let fd: Int32
    let server: P9Server
    private let reader: P9FrameReader
    private var nextTag: UInt16 = 1
    /// Where the server thread leaves how its session ended.
    final class EndBox: Sendable {
        let value = Mutex<P9SessionEnd?>(nil)
    }
    private let ended = EndBox()
    var msize: UInt32 = 0

    init(server: P9Server) throws {
        var ends: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &ends) == 0 else {
            throw P9TestError(description: "socketpair: \(errno)")
        }
        fd = ends[0]
        // A reply that never comes fails the test (EAGAIN) instead of hanging it.
        var timeout = timeval(tv_sec: 15, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        self.server = server
        reader = P9FrameReader(fd: fd)
        try server.serveInBackground(fd: ends[1], closeWhenDone: true) { [ended] end in
            ended.value.withLock { $0 = end }
        }
    }

    deinit { close(fd) }

    // MARK: - Raw frames

    func freshTag() -> UInt16 {
        defer { nextTag = nextTag == 0xFFFE ? 1 : nextTag + 1 }
        return nextTag
    }

    func sendRaw(_ bytes: [UInt8]) throws {
        let result = p9WriteAll(fd, bytes)
        guard result == 0 else { throw P9TestError(description: "write: errno \(result)") }
    }

    func send(_ request: P9Request, tag: UInt16) throws { try sendRaw(request.encode(tag: tag)) }

    /// The next reply; nil when the server closed the connection.
    func receive() throws -> (tag: UInt16, response: P9Response)? {
        guard let frame = try reader.next(limit: 1 << 24) else { return nil }
        return try P9Response.decode(frame: frame)
    }

    /// Sends `request` and waits for its reply.
    func call(_ request: P9Request) throws -> P9Response {
        let tag = request.isVersion ? P9.noTag : freshTag()
        try send(request, tag: tag)
        guard let reply = try receive() else { throw P9TestError(description: "server closed the session") }
        guard reply.tag == tag else { throw P9TestError(description: "reply tag \(reply.tag), sent \(tag)") }
        return reply.response
    }

    /// The errno of an Rlerror reply to `request`, or nil if it succeeded.
    func errorOf(_ request: P9Request) throws -> Int32? {
        if case .error(let code) = try call(request) { return Int32(code) }
        return nil
    }

    /// Calls `request`, failing on Rlerror.
    @discardableResult
    func ok(_ request: P9Request, sourceLocation: SourceLocation = #_sourceLocation) throws -> P9Response {
        let reply = try call(request)
        if case .error(let code) = reply {
            throw P9TestError(description: "\(request.type) failed: \(String(cString: strerror(Int32(code))))")
        }
        return reply
    }

    // MARK: - Sessions

    /// Tversion + Tattach of fid 0 at the root.
    @discardableResult
    func start(msize: UInt32 = 65536) throws -> P9Qid {
        guard case .version(let agreed, let version) = try call(.version(msize: msize, version: P9.version)),
            version == P9.version
        else { throw P9TestError(description: "version refused") }
        self.msize = agreed
        guard case .attach(let qid) = try ok(.attach(fid: 0, afid: P9.noFid, uname: "", aname: "", uid: 0)) else {
            throw P9TestError(description: "bad Rattach")
        }
        return qid
    }

    /// Walks `path` (split at "/") from fid 0 into `fid`.
    @discardableResult
    func walk(_ path: String, to fid: UInt32, from start: UInt32 = 0) throws -> [P9Qid] {
        let names = path.split(separator: "/").map(String.init)
        guard case .walk(let qids) = try ok(.walk(fid: start, newFid: fid, names: names)) else {
            throw P9TestError(description: "bad Rwalk")
        }
        guard qids.count == names.count else { throw P9TestError(description: "walk of \(path) stopped short") }
        return qids
    }

    func open(_ fid: UInt32, flags: UInt32) throws {
        try ok(.lopen(fid: fid, flags: flags))
    }

    func readAll(_ fid: UInt32) throws -> [UInt8] {
        var data: [UInt8] = []
        while true {
            guard case .read(let chunk) = try ok(.read(fid: fid, offset: UInt64(data.count), count: 4096)) else {
                throw P9TestError(description: "bad Rread")
            }
            if chunk.isEmpty { return data }
            data += chunk
        }
    }

    func getattr(_ fid: UInt32) throws -> P9Attributes {
        guard case .getattr(let a) = try ok(.getattr(fid: fid, mask: P9.getattrBasic)) else {
            throw P9TestError(description: "bad Rgetattr")
        }
        return a
    }

    /// Every entry of the open directory `fid`, reading `count` bytes at a time.
    func readdirAll(_ fid: UInt32, count: UInt32 = 8192) throws -> [P9DirEntry] {
        var entries: [P9DirEntry] = []
        var offset: UInt64 = 0
        while true {
            guard case .readdir(let data) = try ok(.readdir(fid: fid, offset: offset, count: count)) else {
                throw P9TestError(description: "bad Rreaddir")
            }
            let batch = try P9DirEntry.decodeAll(data)
            if batch.isEmpty { return entries }
            entries += batch
            offset = batch[batch.count - 1].offset
        }
    }

    /// How the server's session ended, once it has.
    var sessionEnd: P9SessionEnd? { ended.value.withLock { $0 } }
}

extension P9Request {
    var isVersion: Bool {
        if case .version = self { return true }
        return false
    }
}

/// Linux open flags as 9P2000.L sends them.
enum LFlags {
    static let readOnly: UInt32 = 0
    static let writeOnly: UInt32 = 1
    static let readWrite: UInt32 = 2
    static let truncate: UInt32 = 0o1000
    static let directory: UInt32 = 0o200000
}

/// Host stat of `path` without following a symlink.
func lstatOf(_ path: String) -> stat? {
    var st = stat()
    return lstat(path, &st) == 0 ? st : nil
}

/// The bytes of a string, for comparing file contents.
func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }
