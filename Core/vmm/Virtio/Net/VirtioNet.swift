import EventLoop
import GuestMemory
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// virtio-net (type 1) over a TAP interface: a receive queue (0) and a transmit queue (1); no
/// control queue, no multiqueue, no mergeable receive buffers.
///
/// Frames pass between the queues and the ``NetBackend`` with their 12-byte virtio-net header as
/// is (the TAP reads and writes the same layout), so the offloads the guest negotiates cost
/// nothing here: its TSO frames go to the kernel whole, and once it accepts GUEST_TSO the kernel
/// hands it whole 64 KiB segments (TUNSETOFFLOAD follows the features the driver acked).
///
/// Receiving: the TAP is watched on the device thread (an ``EventLoop``); when it is readable
/// the receive queue is served, through the transport and under its lock, one frame per buffer
/// until the TAP is empty or the guest's buffers run out. The TAP is then left unwatched until
/// the guest posts buffers, so frames wait in the kernel (which drops beyond the TAP's queue
/// length), never in the VMM.
public final class VirtioNet: EventLoopDevice {
    static let receiveQueue = 0
    static let transmitQueue = 1
    /// `virtio_net_hdr_v1`: flags, gso_type, hdr_len, gso_size, csum_start, csum_offset, num_buffers.
    static let headerSize = Int(TapDevice.vnetHeaderSize)
    static let numBuffersOffset = 10
    /// Largest Ethernet frame either way: 64 KiB of IP (a TSO segment), an Ethernet header and
    /// a VLAN tag.
    public static let maxFrameLength = 65_535 + 14 + 4
    /// Frames moved to the guest per call at most, so that a flooded TAP does not hold the
    /// device thread (it stays watched and is served again at once).
    static let receiveBudget = 256
    static let linkUp: UInt16 = 1

    /// Device feature bits (virtio 1.x, 5.1.3).
    enum Feature {
        static let csum: UInt64 = 1 << 0
        static let guestCsum: UInt64 = 1 << 1
        static let mac: UInt64 = 1 << 5
        static let guestTSO4: UInt64 = 1 << 7
        static let guestTSO6: UInt64 = 1 << 8
        static let guestECN: UInt64 = 1 << 9
        static let hostTSO4: UInt64 = 1 << 11
        static let hostTSO6: UInt64 = 1 << 12
        static let hostECN: UInt64 = 1 << 13
        static let status: UInt64 = 1 << 16
    }

    struct State {
        var counters = NetCounters()
        var loop: EventLoop?
        /// Whether the backend is watched for readability now.
        var watching = false
        /// The backend reported an error to the loop and is no longer watched at all.
        var backendFailed = false
        var offload: TapOffload = []
        /// One frame read from the backend; a read that fills it was cut short.
        var frame = [UInt8](repeating: 0, count: VirtioNet.headerSize + VirtioNet.maxFrameLength + 1)
        /// Kinds of drop already logged: each is logged once, then only counted.
        var logged: Set<String> = []
    }

    public let mac: MACAddress
    public let backend: any NetBackend
    private let state = Mutex(State())
    private let log: @Sendable (String) -> Void

    /// A NIC with address `mac` whose frames go to and come from `backend`.
    /// - Parameter log: told about dropped frames (once per kind) and backend failures.
    public init(backend: any NetBackend, mac: MACAddress, log: @escaping @Sendable (String) -> Void = { _ in }) {
        self.backend = backend
        self.mac = mac
        self.log = log
    }

    /// Traffic so far (for status and tests).
    public var counters: NetCounters { state.withLock { $0.counters } }

    /// The offloads the backend currently lets through (those the guest accepted).
    public var offload: TapOffload { state.withLock { $0.offload } }

    /// Whether the backend is watched for frames now (not while the guest has no buffers).
    var isWatchingBackend: Bool { state.withLock { $0.watching } }

    /// Starts watching the backend on `loop`; `notify` must serve the queue it is given (the
    /// transport's `notify(queue:)`), and is called on the loop's thread.
    public func start(on loop: EventLoop, notify: @escaping @Sendable (Int) -> Void) throws(VirtioDeviceError) {
        let fd = backend.fd
        try state.withLock { (state: inout State) throws(VirtioDeviceError) in
            state.loop = loop
            do {
                try loop.add(fd, interest: .readable) { [weak self] readiness in
                    guard let self else { return .remove }
                    if !readiness.isDisjoint(with: [.error, .hangUp]) {
                        self.backendFailed()
                        return .remove
                    }
                    // Unwatched until the queue has been served: it watches again if it could
                    // take everything, and leaves the TAP alone if the guest has no buffers.
                    self.state.withLock { self.watch(false, &$0) }
                    // No lock is held here, so the queue is served directly (vsock's socket
                    // handlers hold its lock, hence its loop signal).
                    notify(Self.receiveQueue)
                    return .keep
                }
            } catch {
                throw .invalid("virtio-net: cannot watch the TAP: \(error)")
            }
            state.watching = true
        }
    }

    // MARK: - VirtioDevice

    public var deviceType: UInt16 { 1 }
    public var features: UInt64 {
        Feature.csum | Feature.guestCsum | Feature.mac | Feature.guestTSO4 | Feature.guestTSO6 | Feature.guestECN
            | Feature.hostTSO4 | Feature.hostTSO6 | Feature.hostECN | Feature.status
    }
    public var queueMaxSizes: [UInt16] { [256, 256] }
    public var pciClassCode: UInt32 { 0x02_0000 }  // network controller, Ethernet

    public func readConfig(offset: Int, data: UnsafeMutableRawBufferPointer) {
        // struct virtio_net_config { u8 mac[6]; le16 status; ... } (the rest needs features we do not offer).
        let config = mac.bytes + [UInt8(Self.linkUp & 0xFF), UInt8(Self.linkUp >> 8)]
        for i in 0..<data.count { data[i] = offset + i < config.count && offset + i >= 0 ? config[offset + i] : 0 }
    }

    public func driverFeaturesAcked(_ features: UInt64) {
        var offload: TapOffload = []
        // The kernel may only hand over what the driver takes: partial checksums, then TSO on top.
        if features & Feature.guestCsum != 0 {
            offload.insert(.checksum)
            if features & Feature.guestTSO4 != 0 { offload.insert(.tso4) }
            if features & Feature.guestTSO6 != 0 { offload.insert(.tso6) }
            if features & Feature.guestECN != 0 && !offload.isDisjoint(with: [.tso4, .tso6]) {
                offload.insert(.tsoECN)
            }
        }
        setOffload(offload)
    }

    /// Keeps the TAP and the counters; the next driver negotiates offloads afresh.
    public func reset() {
        setOffload([])
    }

    public func process(queue index: Int, _ queue: inout Virtqueue, memory: GuestMemory) throws(VirtqueueError) -> Bool
    {
        try state.withLock { (state: inout State) throws(VirtqueueError) -> Bool in
            switch index {
            case Self.transmitQueue: return try transmit(&queue, memory: memory, &state)
            case Self.receiveQueue: return try receive(&queue, memory: memory, &state)
            default: return false
            }
        }
    }

    // MARK: - Guest → host (transmit queue)

    private func transmit(_ queue: inout Virtqueue, memory: GuestMemory, _ state: inout State)
        throws(VirtqueueError) -> Bool
    {
        var completed = false
        while let chain = try queue.popChain(memory: memory) {
            try send(chain, memory: memory, &state)
            try queue.pushUsed(head: chain.head, written: 0, memory: memory)
            completed = true
        }
        return completed
    }

    /// Writes one frame, header included, straight from guest memory to the backend.
    private func send(_ chain: DescriptorChain, memory: GuestMemory, _ state: inout State) throws(VirtqueueError) {
        let length = chain.readable.reduce(0) { $0 + Int($1.length) }
        guard length >= Self.headerSize else {
            return drop(
                .transmit, "transmit-short",
                "a transmit buffer of \(length) bytes, shorter than the \(Self.headerSize)-byte header", &state)
        }
        guard length <= Self.headerSize + Self.maxFrameLength else {
            return drop(
                .transmit, "transmit-large",
                "a transmitted frame of \(length - Self.headerSize) bytes, over \(Self.maxFrameLength)", &state)
        }
        var vectors: [iovec] = []
        for buffer in chain.readable where buffer.length > 0 {
            guard let bytes = try? memory.buffer(at: buffer.address, count: Int(buffer.length)) else {
                throw .bufferOutsideMemory(address: buffer.address, length: buffer.length)
            }
            vectors.append(iovec(iov_base: bytes.baseAddress, iov_len: bytes.count))
        }
        var n: Int
        repeat { n = writev(backend.fd, vectors, Int32(vectors.count)) } while n < 0 && errno == EINTR
        guard n >= 0 else {
            let code = errno
            // EAGAIN: the TAP's queue is full; the guest's stack retransmits, as with a busy NIC.
            return drop(
                .transmit, "transmit-errno-\(code)",
                "a transmitted frame: writing it to the TAP failed: \(String(cString: strerror(code)))", &state)
        }
        state.counters.transmittedPackets += 1
        state.counters.transmittedBytes += UInt64(length - Self.headerSize)
    }

    // MARK: - Host → guest (receive queue)

    private func receive(_ queue: inout Virtqueue, memory: GuestMemory, _ state: inout State)
        throws(VirtqueueError) -> Bool
    {
        var completed = false
        // Watch the TAP again unless the guest ran out of buffers (or the TAP failed).
        var watchAfter = true
        defer { watch(watchAfter, &state) }
        for _ in 0..<Self.receiveBudget {
            guard let chain = try queue.popChain(memory: memory) else {
                watchAfter = false
                break
            }
            let room = chain.writable.reduce(0) { $0 + Int($1.length) }
            guard room >= Self.headerSize else {
                throw .malformedRequest("virtio-net receive buffer of \(room) bytes cannot hold the header")
            }
            let n = Self.readFrame(backend.fd, into: &state.frame)
            if n < 0 {
                let code = errno
                queue.undoPop()
                if code != EAGAIN && code != EWOULDBLOCK {
                    watchAfter = false
                    note("receive-errno-\(code)", "reading the TAP failed: \(String(cString: strerror(code)))", &state)
                }
                break
            }
            guard n >= Self.headerSize, n < state.frame.count, n <= room else {
                // This buffer may still fit the next frame: keep it.
                queue.undoPop()
                if n < Self.headerSize {
                    drop(.receive, "receive-short", "a received frame of \(n) bytes, shorter than the header", &state)
                } else {
                    let size =
                        n < state.frame.count ? "\(n - Self.headerSize) bytes" : "over \(Self.maxFrameLength) bytes"
                    drop(
                        .receive, "receive-large",
                        "a received frame of \(size): the guest's receive buffer holds \(room - Self.headerSize)",
                        &state)
                }
                continue
            }
            // Without VIRTIO_NET_F_MRG_RXBUF a frame takes exactly one buffer.
            state.frame[Self.numBuffersOffset] = 1
            state.frame[Self.numBuffersOffset + 1] = 0
            try copy(state.frame, count: n, into: chain, memory: memory)
            try queue.pushUsed(head: chain.head, written: UInt32(n), memory: memory)
            state.counters.receivedPackets += 1
            state.counters.receivedBytes += UInt64(n - Self.headerSize)
            completed = true
        }
        return completed
    }

    /// One frame from `fd` into `buffer`: its length, or -1 with errno set (EINTR is retried).
    private static func readFrame(_ fd: Int32, into buffer: inout [UInt8]) -> Int {
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n >= 0 || errno != EINTR { return n }
        }
    }

    /// Copies the first `count` bytes of `frame` into the chain's writable buffers, in order
    /// (the caller checked that they fit).
    private func copy(_ frame: [UInt8], count: Int, into chain: DescriptorChain, memory: GuestMemory)
        throws(VirtqueueError)
    {
        var offset = 0
        for buffer in chain.writable where offset < count {
            let length = min(Int(buffer.length), count - offset)
            guard let target = try? memory.buffer(at: buffer.address, count: length) else {
                throw .bufferOutsideMemory(address: buffer.address, length: buffer.length)
            }
            frame.withUnsafeBytes {
                target.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[offset..<(offset + length)]))
            }
            offset += length
        }
    }

    // MARK: - Helpers

    /// Watches the backend for readability, or stops, if that changes anything.
    private func watch(_ wanted: Bool, _ state: inout State) {
        guard let loop = state.loop, !state.backendFailed, state.watching != wanted else { return }
        loop.setInterest(backend.fd, wanted ? .readable : [])
        state.watching = wanted
    }

    /// The backend reported an error or hang-up: it is no longer watched (it would be reported
    /// again at once, forever); the guest's receive kicks still try it.
    private func backendFailed() {
        state.withLock { state in
            state.backendFailed = true
            state.watching = false
            note("backend-failed", "the TAP reported an error; it is no longer watched", &state)
        }
    }

    private func setOffload(_ offload: TapOffload) {
        do {
            try backend.setOffload(offload)
            state.withLock { $0.offload = offload }
        } catch {
            log("virtio-net: \(error); the guest gets frames without offloads")
            state.withLock { $0.offload = [] }
            try? backend.setOffload([])
        }
    }

    private enum Direction { case transmit, receive }

    private func drop(_ direction: Direction, _ kind: String, _ what: String, _ state: inout State) {
        switch direction {
        case .transmit: state.counters.transmitDropped += 1
        case .receive: state.counters.receiveDropped += 1
        }
        note(kind, "dropped \(what)", &state)
    }

    /// Logs `message` the first time `kind` happens.
    private func note(_ kind: String, _ message: String, _ state: inout State) {
        guard state.logged.insert(kind).inserted else { return }
        log("virtio-net: \(message) (logged once; later ones are only counted)")
    }
}

/// Traffic through a ``VirtioNet`` since it was made, named from the guest's side: frame bytes,
/// without the virtio-net header.
public struct NetCounters: Sendable, Equatable {
    /// Frames the guest sent that reached the TAP.
    public var transmittedPackets: UInt64 = 0
    public var transmittedBytes: UInt64 = 0
    /// Frames the guest sent that were malformed, too large, or refused by the TAP.
    public var transmitDropped: UInt64 = 0
    /// Frames from the TAP put in the guest's receive buffers.
    public var receivedPackets: UInt64 = 0
    public var receivedBytes: UInt64 = 0
    /// Frames from the TAP that did not fit the guest's receive buffer.
    public var receiveDropped: UInt64 = 0

    public init() {}
}
