import GuestMemory

/// One request: the driver's buffers in chain order, readable ones first by convention.
public struct DescriptorChain: Sendable, Equatable {
    public struct Buffer: Sendable, Equatable {
        public var address: UInt64
        public var length: UInt32
        public var isWritable: Bool
    }

    /// Bound on a request's total size, so that a guest cannot make the device allocate or
    /// process gigabytes for one request.
    public static let maxTotalLength: UInt64 = 64 << 20

    public let head: UInt16
    public let buffers: DescriptorBuffers

    public init(head: UInt16, buffers: DescriptorBuffers) {
        self.head = head
        self.buffers = buffers
    }

    public var readable: [Buffer] { buffers.filter { !$0.isWritable } }
    public var writable: [Buffer] { buffers.filter(\.isWritable) }
    /// Total bytes of the readable and of the writable buffers (without building arrays).
    public var readableLength: Int { buffers.reduce(0) { $1.isWritable ? $0 : $0 + Int($1.length) } }
    public var writableLength: Int { buffers.reduce(0) { $1.isWritable ? $0 + Int($1.length) : $0 } }

    /// The writable (or readable) buffers without their first `skip` bytes (a request or packet
    /// header) and cut to at most `limit` bytes: where the payload lies, as a sequence that
    /// builds no array. Empty pieces are left out.
    public func segments(writable: Bool, skipping skip: Int, limit: Int = Int.max) -> Segments {
        Segments(buffers: buffers, writable: writable, skip: skip, left: limit)
    }

    /// `buffers` without their first `skip` bytes and cut to at most `limit` bytes, as an array.
    public static func trimmed(_ buffers: [Buffer], skipping skip: Int, limit: Int = Int.max) -> [Buffer] {
        var segments = Segments(buffers: DescriptorBuffers(buffers), writable: nil, skip: skip, left: limit)
        var result: [Buffer] = []
        while let buffer = segments.next() { result.append(buffer) }
        return result
    }

    /// Payload pieces of a chain: see ``segments(writable:skipping:limit:)``.
    public struct Segments: Sequence, IteratorProtocol {
        let buffers: DescriptorBuffers
        /// Which buffers count (nil: all).
        let writable: Bool?
        var skip: Int
        var left: Int
        var index = 0

        init(buffers: DescriptorBuffers, writable: Bool?, skip: Int, left: Int) {
            self.buffers = buffers
            self.writable = writable
            self.skip = skip
            self.left = left
        }

        public mutating func next() -> Buffer? {
            while left > 0, index < buffers.count {
                let buffer = buffers[index]
                index += 1
                if let writable, buffer.isWritable != writable { continue }
                if let piece = Segments.cut(buffer, skip: &skip, left: &left) { return piece }
            }
            return nil
        }

        /// `buffer` without the first `skip` bytes and cut to `left`, counting both down; nil
        /// when nothing of it remains.
        @inline(__always)
        static func cut(_ buffer: Buffer, skip: inout Int, left: inout Int) -> Buffer? {
            let dropped = Swift.min(skip, Int(buffer.length))
            skip -= dropped
            let length = Swift.min(Int(buffer.length) - dropped, left)
            guard length > 0 else { return nil }
            left -= length
            return Buffer(
                address: buffer.address + UInt64(dropped), length: UInt32(length), isWritable: buffer.isWritable)
        }
    }

    /// Calls `body` with each piece ``segments(writable:skipping:limit:)`` yields, without
    /// copying the chain (a per-packet path: a copy of a chain costs reference counting).
    @inline(__always)
    public func forEachSegment<E: Error>(
        writable: Bool, skipping skip: Int, limit: Int = Int.max, _ body: (Buffer) throws(E) -> Void
    ) throws(E) {
        var skip = skip
        var left = limit
        var index = 0
        while left > 0, index < buffers.count {
            let buffer = buffers[index]
            index += 1
            guard buffer.isWritable == writable else { continue }
            if let piece = Segments.cut(buffer, skip: &skip, left: &left) { try body(piece) }
        }
    }

    /// Copies up to `limit` bytes of the readable buffers.
    public func readBytes(memory: GuestMemory, limit: Int = Int.max) throws(VirtqueueError) -> [UInt8] {
        var bytes: [UInt8] = []
        for buffer in readable where bytes.count < limit {
            let count = min(Int(buffer.length), limit - bytes.count)
            do { bytes += try memory.read(at: buffer.address, count: count) } catch {
                throw .bufferOutsideMemory(address: buffer.address, length: buffer.length)
            }
        }
        return bytes
    }

    /// Copies `bytes` into the writable buffers in order; returns how many fit.
    @discardableResult
    public func writeBytes(_ bytes: some Collection<UInt8>, memory: GuestMemory) throws(VirtqueueError) -> Int {
        var remaining = bytes[...]
        var written = 0
        for buffer in writable where !remaining.isEmpty {
            let chunk = remaining.prefix(Int(buffer.length))
            do { try memory.write(chunk, at: buffer.address) } catch {
                throw .bufferOutsideMemory(address: buffer.address, length: buffer.length)
            }
            written += chunk.count
            remaining = remaining.dropFirst(chunk.count)
        }
        return written
    }
}

/// A chain's buffers, the first two held inline: most requests are a header and a payload (a
/// vsock or net packet, say), and a chain is walked for every packet, so that this way the
/// common case allocates nothing.
public struct DescriptorBuffers: RandomAccessCollection, Sendable, Equatable, ExpressibleByArrayLiteral {
    public typealias Buffer = DescriptorChain.Buffer
    private static let none = Buffer(address: 0, length: 0, isWritable: false)

    private var first = none
    private var second = none
    /// Nil, not empty, in the common case: copying a nil array retains nothing.
    private var more: [Buffer]? = nil
    public private(set) var count = 0

    public init() {}

    public init(_ buffers: some Sequence<Buffer>) {
        for buffer in buffers { append(buffer) }
    }

    public init(arrayLiteral buffers: Buffer...) { self.init(buffers) }

    public var startIndex: Int { 0 }
    public var endIndex: Int { count }

    public subscript(position: Int) -> Buffer {
        precondition(position >= 0 && position < count, "descriptor buffer \(position) is out of range")
        switch position {
        case 0: return first
        case 1: return second
        default: return more?[position - 2] ?? Self.none
        }
    }

    public mutating func append(_ buffer: Buffer) {
        switch count {
        case 0: first = buffer
        case 1: second = buffer
        default:
            if more == nil { more = [] }
            more?.append(buffer)
        }
        count += 1
    }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.elementsEqual(rhs) }
}
