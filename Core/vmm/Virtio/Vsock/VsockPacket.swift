/// The header of a virtio-vsock packet (virtio 1.2, 5.10.6): 44 bytes, little endian, followed
/// by `length` bytes of payload for `rw` packets.
public struct VsockHeader: Sendable, Equatable {
    public static let size = 44
    /// The only socket type virtio-vsock carries here.
    public static let typeStream: UInt16 = 1
    /// CID of the host.
    public static let hostCID: UInt64 = 2

    public enum Op: UInt16, Sendable {
        case request = 1
        case response = 2
        case reset = 3
        case shutdown = 4
        case rw = 5
        case creditUpdate = 6
        case creditRequest = 7
    }

    /// Shutdown flags: the sender will receive no more, will send no more.
    public static let shutdownReceive: UInt32 = 1
    public static let shutdownSend: UInt32 = 2

    public var sourceCID: UInt64
    public var destinationCID: UInt64
    public var sourcePort: UInt32
    public var destinationPort: UInt32
    public var length: UInt32
    public var type: UInt16
    public var op: UInt16
    public var flags: UInt32
    public var bufferAllocation: UInt32
    public var forwardCount: UInt32

    public init(
        sourceCID: UInt64, destinationCID: UInt64, sourcePort: UInt32, destinationPort: UInt32, length: UInt32 = 0,
        type: UInt16 = typeStream, op: Op, flags: UInt32 = 0, bufferAllocation: UInt32 = 0, forwardCount: UInt32 = 0
    ) {
        self.sourceCID = sourceCID
        self.destinationCID = destinationCID
        self.sourcePort = sourcePort
        self.destinationPort = destinationPort
        self.length = length
        self.type = type
        self.op = op.rawValue
        self.flags = flags
        self.bufferAllocation = bufferAllocation
        self.forwardCount = forwardCount
    }

    /// Decodes the first 44 bytes; nil when there are fewer.
    public init?(_ bytes: [UInt8]) {
        guard bytes.count >= Self.size else { return nil }
        self = bytes.withUnsafeBytes { Self(wire: $0) }
    }

    /// Decodes the first 44 bytes of `raw` (guest memory, say); nil when there are fewer.
    public init?(_ raw: UnsafeRawBufferPointer) {
        guard raw.count >= Self.size else { return nil }
        self.init(wire: raw)
    }

    private init(wire raw: UnsafeRawBufferPointer) {
        func field<T: FixedWidthInteger>(_ offset: Int, _: T.Type) -> T {
            T(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: T.self))
        }
        sourceCID = field(0, UInt64.self)
        destinationCID = field(8, UInt64.self)
        sourcePort = field(16, UInt32.self)
        destinationPort = field(20, UInt32.self)
        length = field(24, UInt32.self)
        type = field(28, UInt16.self)
        op = field(30, UInt16.self)
        flags = field(32, UInt32.self)
        bufferAllocation = field(36, UInt32.self)
        forwardCount = field(40, UInt32.self)
    }

    /// Writes the 44 wire bytes at the start of `raw`, which must have room for them.
    public func store(into raw: UnsafeMutableRawBufferPointer) {
        precondition(raw.count >= Self.size, "a vsock header needs \(Self.size) bytes")
        func field<T: FixedWidthInteger>(_ value: T, _ offset: Int) {
            raw.storeBytes(of: value.littleEndian, toByteOffset: offset, as: T.self)
        }
        field(sourceCID, 0)
        field(destinationCID, 8)
        field(sourcePort, 16)
        field(destinationPort, 20)
        field(length, 24)
        field(type, 28)
        field(op, 30)
        field(flags, 32)
        field(bufferAllocation, 36)
        field(forwardCount, 40)
    }

    /// The 44 wire bytes.
    public var encoded: [UInt8] {
        [UInt8](unsafeUninitializedCapacity: Self.size) { buffer, initialized in
            store(into: UnsafeMutableRawBufferPointer(buffer))
            initialized = Self.size
        }
    }

    public var knownOp: Op? { Op(rawValue: op) }
}
