// Bounds-checked little-endian reading and writing of 9P fields. Every read checks the bytes
// left first, so a length field can never make the decoder read past the frame.

// MARK: - Errors

/// Why a frame could not be decoded. The server answers a frame with a readable header but a
/// bad body with Rlerror(EINVAL); a bad header ends the session.
public enum P9DecodeError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A field needed more bytes than the frame had left.
    case truncated(field: String, needed: Int, available: Int)
    /// size[4] disagrees with the bytes handed to the decoder.
    case sizeMismatch(declared: UInt32, actual: Int)
    /// size[4] is below the 7-byte header.
    case sizeTooSmall(UInt32)
    /// size[4] is above the negotiated msize.
    case sizeTooLarge(UInt32, limit: UInt32)
    /// The body was decoded but bytes were left over.
    case trailingBytes(Int, type: P9MessageType)
    /// The type byte names no 9P2000.L message.
    case unknownType(UInt8)
    /// A reply where a request was expected, or the reverse.
    case wrongDirection(P9MessageType)
    /// Twalk carried more than 16 names, or Rwalk more than 16 qids.
    case tooManyWalkNames(Int)
    /// A string field was not valid UTF-8.
    case invalidUTF8(field: String)

    public var description: String {
        switch self {
        case .truncated(let field, let needed, let available):
            return "9P: \(field) needs \(needed) bytes, \(available) left"
        case .sizeMismatch(let declared, let actual):
            return "9P: size field says \(declared) bytes, frame has \(actual)"
        case .sizeTooSmall(let size): return "9P: size \(size) is smaller than the 7-byte header"
        case .sizeTooLarge(let size, let limit): return "9P: size \(size) exceeds msize \(limit)"
        case .trailingBytes(let count, let type): return "9P: \(count) bytes left after \(type)"
        case .unknownType(let type): return "9P: unknown message type \(type)"
        case .wrongDirection(let type): return "9P: unexpected message \(type) in this direction"
        case .tooManyWalkNames(let count): return "9P: walk with \(count) elements (at most 16)"
        case .invalidUTF8(let field): return "9P: \(field) is not valid UTF-8"
        }
    }
}

// MARK: - Frame header

/// The 7-byte header every 9P message starts with.
public struct P9Header: Equatable, Sendable {
    public var size: UInt32
    public var type: UInt8
    public var tag: UInt16

    /// Reads the header of `frame` (at least 7 bytes) and checks that size[4] matches its length.
    public init(frame: [UInt8]) throws(P9DecodeError) {
        var reader = P9Reader(frame)
        size = try reader.u32("size")
        type = try reader.u8("type")
        tag = try reader.u16("tag")
        guard size >= UInt32(P9.headerSize) else { throw .sizeTooSmall(size) }
        guard Int(size) == frame.count else { throw .sizeMismatch(declared: size, actual: frame.count) }
    }
}

// MARK: - Reader

/// Reads fields from a frame, refusing any read past its end.
struct P9Reader {
    let bytes: [UInt8]
    private(set) var index = 0

    init(_ bytes: [UInt8], from index: Int = 0) {
        self.bytes = bytes
        self.index = index
    }

    var remaining: Int { bytes.count - index }

    private mutating func take(_ count: Int, _ field: String) throws(P9DecodeError) -> Int {
        guard count >= 0, count <= remaining else {
            throw .truncated(field: field, needed: count, available: remaining)
        }
        defer { index += count }
        return index
    }

    mutating func u8(_ field: String) throws(P9DecodeError) -> UInt8 {
        bytes[try take(1, field)]
    }

    mutating func u16(_ field: String) throws(P9DecodeError) -> UInt16 {
        let at = try take(2, field)
        return UInt16(bytes[at]) | UInt16(bytes[at + 1]) << 8
    }

    mutating func u32(_ field: String) throws(P9DecodeError) -> UInt32 {
        let at = try take(4, field)
        var value: UInt32 = 0
        for i in (0..<4).reversed() { value = value << 8 | UInt32(bytes[at + i]) }
        return value
    }

    mutating func u64(_ field: String) throws(P9DecodeError) -> UInt64 {
        let at = try take(8, field)
        var value: UInt64 = 0
        for i in (0..<8).reversed() { value = value << 8 | UInt64(bytes[at + i]) }
        return value
    }

    mutating func data(_ count: Int, _ field: String) throws(P9DecodeError) -> [UInt8] {
        let at = try take(count, field)
        return Array(bytes[at..<at + count])
    }

    /// len[2] followed by that many bytes.
    mutating func rawString(_ field: String) throws(P9DecodeError) -> [UInt8] {
        let count = Int(try u16("\(field) length"))
        return try data(count, field)
    }

    /// len[2] followed by that many bytes of UTF-8.
    mutating func string(_ field: String) throws(P9DecodeError) -> String {
        let raw = try rawString(field)
        guard let text = String(validating: raw, as: UTF8.self) else { throw .invalidUTF8(field: field) }
        return text
    }

    mutating func qid(_ field: String = "qid") throws(P9DecodeError) -> P9Qid {
        let type = try u8("\(field).type")
        let version = try u32("\(field).version")
        let path = try u64("\(field).path")
        return P9Qid(type: type, version: version, path: path)
    }

    /// Checks that the body was consumed whole.
    func finish(_ type: P9MessageType) throws(P9DecodeError) {
        guard remaining == 0 else { throw .trailingBytes(remaining, type: type) }
    }
}

// MARK: - Writer

/// Builds a frame: the header first, size[4] patched in by ``finish()``.
struct P9Writer {
    private(set) var bytes: [UInt8]

    init(type: P9MessageType, tag: UInt16, capacity: Int = 64) {
        bytes = []
        bytes.reserveCapacity(capacity)
        u32(0)
        u8(type.rawValue)
        u16(tag)
    }

    mutating func u8(_ value: UInt8) { bytes.append(value) }
    mutating func u16(_ value: UInt16) {
        bytes.append(UInt8(truncatingIfNeeded: value))
        bytes.append(UInt8(truncatingIfNeeded: value >> 8))
    }
    mutating func u32(_ value: UInt32) {
        for i in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: value >> (8 * i))) }
    }
    mutating func u64(_ value: UInt64) {
        for i in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: value >> (8 * i))) }
    }
    mutating func data(_ value: [UInt8]) { bytes += value }

    /// len[2] and the bytes (cut at 65535 bytes, the most a 9P string holds).
    mutating func rawString(_ value: [UInt8]) {
        let count = min(value.count, Int(UInt16.max))
        u16(UInt16(count))
        bytes += value[0..<count]
    }
    mutating func string(_ value: String) { rawString(Array(value.utf8)) }

    mutating func qid(_ value: P9Qid) {
        u8(value.type)
        u32(value.version)
        u64(value.path)
    }

    /// The finished frame, size[4] filled in.
    mutating func finish() -> [UInt8] {
        let size = UInt32(truncatingIfNeeded: bytes.count)
        for i in 0..<4 { bytes[i] = UInt8(truncatingIfNeeded: size >> (8 * i)) }
        return bytes
    }
}

// MARK: - Directory entries

extension P9DirEntry {
    /// Appends this entry's wire form to `buffer`.
    public func encode(into buffer: inout [UInt8]) {
        var writer = P9Writer(type: .rreaddir, tag: 0)
        writer.qid(qid)
        writer.u64(offset)
        writer.u8(type)
        writer.rawString(name)
        buffer += writer.finish()[P9.headerSize...]
    }

    /// Splits an Rreaddir payload into entries.
    public static func decodeAll(_ data: [UInt8]) throws(P9DecodeError) -> [P9DirEntry] {
        var reader = P9Reader(data)
        var entries: [P9DirEntry] = []
        while reader.remaining > 0 {
            let qid = try reader.qid()
            let offset = try reader.u64("dirent.offset")
            let type = try reader.u8("dirent.type")
            let name = try reader.rawString("dirent.name")
            entries.append(P9DirEntry(qid: qid, offset: offset, type: type, name: name))
        }
        return entries
    }
}
