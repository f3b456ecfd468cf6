import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Just enough of 9P2000.L's wire format, written out by hand, to walk, open and read through a
/// server from a test (what the guest's kernel does; the codec under test is not used to check
/// itself).
struct P9Wire {
    let fd: Int32
    static let noFid: UInt32 = 0xFFFF_FFFF

    struct Reply {
        let type: UInt8
        let body: [UInt8]
        /// Rlerror's errno, nil for other replies.
        var errno: UInt32? { type == 7 ? Self.u32(body, 0) : nil }
        static func u32(_ b: [UInt8], _ at: Int) -> UInt32 {
            b[at..<at + 4].reversed().reduce(0) { $0 << 8 | UInt32($1) }
        }
    }

    static func u16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8)] }
    static func u32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(v >> (8 * $0) & 0xFF) } }
    static func u64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(v >> (8 * $0) & 0xFF) } }
    static func str(_ s: String) -> [UInt8] { u16(UInt16(s.utf8.count)) + Array(s.utf8) }

    /// Sends one request and reads its reply (one at a time: tag 1 for all but Tversion).
    func call(_ type: UInt8, _ payload: [UInt8]) throws -> Reply {
        let tag: UInt16 = type == 100 ? 0xFFFF : 1
        let message = Self.u32(UInt32(7 + payload.count)) + [type] + Self.u16(tag) + payload
        guard write(fd, message, message.count) == message.count else { throw P9WireError("write failed") }
        let header = try read(7)
        let size = Int(Reply.u32(header, 0))
        guard size >= 7 else { throw P9WireError("reply of size \(size)") }
        return Reply(type: header[4], body: try read(size - 7))
    }

    private func read(_ count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + done, count - done) }
            guard n > 0 else { throw P9WireError("the server closed the connection") }
            done += n
        }
        return bytes
    }

    // MARK: - Requests

    func version() throws -> Reply { try call(100, Self.u32(65536) + Self.str("9P2000.L")) }
    func attach(fid: UInt32) throws -> Reply {
        try call(104, Self.u32(fid) + Self.u32(Self.noFid) + Self.str("root") + Self.str("") + Self.u32(0))
    }
    func walk(_ fid: UInt32, to newFid: UInt32, _ names: [String]) throws -> Reply {
        try call(110, Self.u32(fid) + Self.u32(newFid) + Self.u16(UInt16(names.count)) + names.flatMap(Self.str))
    }
    func open(_ fid: UInt32, flags: UInt32) throws -> Reply { try call(12, Self.u32(fid) + Self.u32(flags)) }
    func read(_ fid: UInt32, count: UInt32) throws -> Reply {
        try call(116, Self.u32(fid) + Self.u64(0) + Self.u32(count))
    }
    func create(_ dirFid: UInt32, name: String) throws -> Reply {
        try call(
            14, Self.u32(dirFid) + Self.str(name) + Self.u32(UInt32(O_WRONLY | O_CREAT)) + Self.u32(0o644) + Self.u32(0)
        )
    }
    func mkdir(_ dirFid: UInt32, name: String) throws -> Reply {
        try call(72, Self.u32(dirFid) + Self.str(name) + Self.u32(0o755) + Self.u32(0))
    }

    /// Rread's data as text.
    static func text(_ reply: Reply) -> String? {
        guard reply.type == 117 else { return nil }
        let count = Int(Reply.u32(reply.body, 0))
        return String(decoding: reply.body[4..<4 + count], as: UTF8.self)
    }
}

struct P9WireError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
