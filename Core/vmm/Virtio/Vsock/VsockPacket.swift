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
        func u64(_ at: Int) -> UInt64 { bytes.loadLE(UInt64.self, at: at) ?? 0 }
        func u32(_ at: Int) -> UInt32 { bytes.loadLE(UInt32.self, at: at) ?? 0 }
        func u16(_ at: Int) -> UInt16 { bytes.loadLE(UInt16.self, at: at) ?? 0 }
        sourceCID = u64(0)
        destinationCID = u64(8)
        sourcePort = u32(16)
        destinationPort = u32(20)
        length = u32(24)
        type = u16(28)
        op = u16(30)
        flags = u32(32)
        bufferAllocation = u32(36)
        forwardCount = u32(40)
    }

    /// The 44 wire bytes.
    public var encoded: [UInt8] {
        var bytes = [UInt8](repeating: 0, count: Self.size)
        bytes.storeLE(sourceCID, at: 0)
        bytes.storeLE(destinationCID, at: 8)
        bytes.storeLE(sourcePort, at: 16)
        bytes.storeLE(destinationPort, at: 20)
        bytes.storeLE(length, at: 24)
        bytes.storeLE(type, at: 28)
        bytes.storeLE(op, at: 30)
        bytes.storeLE(flags, at: 32)
        bytes.storeLE(bufferAllocation, at: 36)
        bytes.storeLE(forwardCount, at: 40)
        return bytes
    }

    public var knownOp: Op? { Op(rawValue: op) }
}
