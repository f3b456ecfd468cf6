#if canImport(Glibc)
    import Glibc
#endif

/// Room for one batch of receive buffers that one read of a host socket fills: where each
/// packet's header goes and how much payload it takes, and the `iovec`s of all their payload.
///
/// Allocated once per device, because a batch is planned for every read: building arrays for
/// it cost an allocation and a reference count per buffer.
///
/// Not thread-safe: used only under ``VirtioVsock``'s state lock.
final class VsockReceiveBatch: @unchecked Sendable {
    /// One receive buffer of the batch.
    struct Packet {
        let head: UInt16
        /// Payload bytes it may carry.
        let capacity: Int
        /// Where its header is written, in place (the batch's first buffer may lack such a spot
        /// and is written through its chain instead).
        let header: UnsafeMutableRawBufferPointer?
    }

    let packets: UnsafeMutableBufferPointer<Packet>
    let vectors: UnsafeMutableBufferPointer<iovec>
    private(set) var packetCount = 0
    private(set) var vectorCount = 0

    /// Room for `maxPackets` buffers and `maxVectors` `iovec`s in all: at least a whole
    /// chain's worth of buffers (the queue's size), so that a batch's first buffer always fits.
    init(maxPackets: Int, maxVectors: Int) {
        packets = .allocate(capacity: maxPackets)
        vectors = .allocate(capacity: maxVectors)
    }

    deinit {
        packets.deallocate()
        vectors.deallocate()
    }

    func removeAll() {
        packetCount = 0
        vectorCount = 0
    }

    var isFull: Bool { packetCount == packets.count }
    var vectorRoom: Int { vectors.count - vectorCount }

    func append(_ packet: Packet) {
        precondition(!isFull, "a receive batch holds \(packets.count) buffers")
        packets[packetCount] = packet
        packetCount += 1
    }

    func appendVector(_ bytes: UnsafeMutableRawBufferPointer) {
        precondition(vectorCount < vectors.count, "a receive batch holds \(vectors.count) pieces")
        vectors[vectorCount] = iovec(iov_base: bytes.baseAddress, iov_len: bytes.count)
        vectorCount += 1
    }
}
