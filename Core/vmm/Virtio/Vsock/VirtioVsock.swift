import EventLoop
import GuestMemory
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// virtio-vsock (type 19) in user space, with Firecracker's host side: the VM's vsock is a Unix
/// socket at ``socketPath``.
///
/// - A host program connects to ``socketPath``, writes `CONNECT <port>\n`, and once the guest
///   accepts reads `OK <host port>\n`; after that the socket carries the stream. A refusal
///   (nothing listens on the port) is an end without a line; a guest that does not answer in
///   time gets `ERROR <why>\n` and an end.
/// - A guest connection to CID 2 port P is connected to the Unix socket `<socketPath>_P`; the
///   guest gets a reset when nothing listens there.
/// - Optionally, per-port listeners: a plain Unix socket for one guest port, where a connection
///   is that guest port's stream from the first byte (no `CONNECT` line, no `OK`): for clients
///   such as gRPC that cannot speak a preamble.
///
/// Host sockets are watched by the VMM's device thread (an ``EventLoop``). Queue work runs
/// under the transport's lock; socket events take only this device's lock and then kick the
/// receive queue through an eventfd, so the two never wait on each other.
public final class VirtioVsock: EventLoopDevice {
    static let receiveQueue = 0
    static let transmitQueue = 1
    static let eventQueue = 2
    /// Each queue's largest size: receive, transmit, event.
    static let queueSizes: [UInt16] = [256, 256, 64]
    /// What each connection may have in flight towards the host (our buf_alloc).
    public static let bufferAllocation: UInt32 = 256 << 10
    /// Largest payload put in one receive buffer.
    static let maxPacketPayload = 64 << 10
    /// Most bytes, and receive buffers, one read from a host socket fills: Linux posts 4 KiB
    /// buffers, and a readv across many of them costs one system call instead of one each.
    static let maxBatchBytes = 256 << 10
    static let maxBatchBuffers = 64
    /// Host bytes read ahead of the guest's credit, at most, per connection (kept in receive
    /// buffers, of which all streams together hold at most a quarter of the queue).
    static let readAheadBytes = 256 << 10
    /// Connections at most, host- and guest-initiated together.
    public static let maxConnections = 1024
    /// Replies to the guest's own packets (resets, credit updates) waiting for receive buffers
    /// at most: beyond that the device stops taking transmit packets, as vhost-vsock does
    /// (queued_replies), so a guest that never reads cannot make the VMM queue without bound.
    /// Packets the host side starts (requests, resets, shutdowns) do not count: they are bounded
    /// by the connections, and stopping the guest's transmissions for them could deadlock with
    /// a guest that, in turn, stops reading until its own replies are taken.
    static let maxControlBacklog = 256
    /// How long a host client waits, by default, for the guest to accept once the REQUEST is in
    /// a receive buffer: then the guest gets an RST, and the client `ERROR <why>` and an end.
    /// Firecracker waits 2 s; a guest under heavy load on a slow host (nested, emulated) can take
    /// longer, and a client that wants less can hang up sooner. A REQUEST that waits for receive
    /// buffers gives up after ``queuedConnectTimeoutMilliseconds``.
    public static let defaultConnectTimeoutMilliseconds: UInt64 = 5000
    static let queuedConnectTimeoutMilliseconds: UInt64 = 10_000
    /// Host ports for host-initiated connections start here (Firecracker's convention: high,
    /// clear of the well-known ports a guest listens on).
    static let firstHostPort: UInt32 = 1 << 30
    /// The send buffer asked for on host sockets: room for a whole window (``bufferAllocation``)
    /// of the guest's stream with the kernel's overhead per packet, so that the device rarely
    /// waits for a host reader to make room (see ``UnixSocket/setSendBuffer(_:to:)``).
    public static let defaultHostSendBufferBytes = UnixSocket.streamingSendBufferBytes

    struct State {
        var connections: [Int32: VsockConnection] = [:]
        var byKey: [VsockConnectionKey: Int32] = [:]
        /// Packets without payload waiting for receive buffers, in order: those the host side
        /// starts, and the replies to the guest's packets (which alone can stop its transmissions).
        var control: [VsockHeader] = []
        var replies: [VsockHeader] = []
        var hasPackets: Bool { !control.isEmpty || !replies.isEmpty }
        var nextHostPort = VirtioVsock.firstHostPort
        /// Round-robin position among connections with data for the guest.
        var lastServed: Int32 = -1
        /// Receive buffers holding bytes read ahead, all streams together.
        var heldBuffers = 0
        /// The most receive buffers seen outstanding (available or held): what the guest posts.
        var mostOutstanding = 0
        /// Receive buffers to give back to the guest empty (their stream ended, or its bytes
        /// were spilled).
        var returnedBuffers: [UInt16] = []

        /// Whether the receive queue has work: packets to send, buffers to give back, or host
        /// bytes to send or read ahead.
        var receiveHasWork: Bool {
            hasPackets || !returnedBuffers.isEmpty
                || connections.values.contains { $0.wantsToSendData || $0.wantsToReadAhead }
        }
    }

    public let guestCID: UInt64
    public let socketPath: String
    let listener: Int32
    /// Per-port listeners: descriptor → (guest port, socket path).
    let portListeners: [Int32: (port: UInt32, path: String)]
    let state = Mutex(State())
    /// Serves the receive queue on the device thread: raised there (after transmit packets or a
    /// host socket's readiness), it costs no system call.
    let receiveKick: LoopSignal
    /// Resumes the transmit queue once the replies it was waiting on have gone out.
    let transmitKick: LoopSignal
    /// Ticks that expire host connections the guest never answered.
    let connectTimer: IntervalTimer
    /// This device's wait for the guest to accept a delivered REQUEST.
    let connectTimeoutMilliseconds: UInt64
    /// The send buffer asked for on each host socket.
    let hostSendBufferBytes: Int32
    let loop = Mutex<EventLoop?>(nil)
    let log: @Sendable (String) -> Void
    /// The receive buffers of the read being made (used under the state lock). Room for two
    /// receive chains of the longest kind the queue allows, so that any first one fits whole.
    let receiveBatch = VsockReceiveBatch(
        maxPackets: VirtioVsock.maxBatchBuffers, maxVectors: 2 * Int(VirtioVsock.queueSizes[VirtioVsock.receiveQueue]))

    /// Listens at `socketPath` for host connections, and at each of `portSockets` for
    /// connections to that one guest port.
    /// - Parameters:
    ///   - connectTimeoutMilliseconds: how long the guest has to accept a host connection once
    ///     it could see the request.
    ///   - hostSendBufferBytes: the send buffer asked for on each host socket, which the device
    ///     writes the guest's streams into (the kernel caps it at net.core.wmem_max, doubled).
    ///   - log: told about refused or broken streams.
    public init(
        guestCID: UInt64, socketPath: String, portSockets: [(port: UInt32, path: String)] = [],
        connectTimeoutMilliseconds: UInt64 = VirtioVsock.defaultConnectTimeoutMilliseconds,
        hostSendBufferBytes: Int32 = VirtioVsock.defaultHostSendBufferBytes,
        log: @escaping @Sendable (String) -> Void = { _ in }
    ) throws(VirtioDeviceError) {
        guard guestCID >= 3, guestCID < 0xFFFF_FFFF else {
            throw .invalid("guest CID \(guestCID) is not in 3...4294967294")
        }
        self.guestCID = guestCID
        self.socketPath = socketPath
        self.connectTimeoutMilliseconds = connectTimeoutMilliseconds
        self.hostSendBufferBytes = hostSendBufferBytes
        self.log = log
        do {
            receiveKick = try LoopSignal()
            transmitKick = try LoopSignal()
            connectTimer = try IntervalTimer(milliseconds: 500)
            listener = try UnixSocket.listen(at: socketPath)
        } catch {
            throw .invalid("vsock socket \(socketPath): \(error)")
        }
        var portListeners: [Int32: (port: UInt32, path: String)] = [:]
        for (port, path) in portSockets {
            do {
                portListeners[try UnixSocket.listen(at: path)] = (port, path)
            } catch {
                for (fd, listening) in portListeners {
                    close(fd)
                    unlink(listening.path)
                }
                close(listener)
                unlink(socketPath)
                throw .invalid("vsock socket \(path) for guest port \(port): \(error)")
            }
        }
        self.portListeners = portListeners
    }

    deinit {
        close(listener)
        unlink(socketPath)
        for (fd, listening) in portListeners {
            close(fd)
            unlink(listening.path)
        }
        for fd in state.withLock({ Array($0.connections.keys) }) { close(fd) }
    }

    /// Starts serving host sockets on `loop`; `notify` must serve the queue it is given (the
    /// transport's `notify(queue:)`), and is called on the loop's thread.
    public func start(on loop: EventLoop, notify: @escaping @Sendable (Int) -> Void) throws(VirtioDeviceError) {
        self.loop.withLock { $0 = loop }
        do {
            try loop.add(receiveKick) { notify(Self.receiveQueue) }
            try loop.add(transmitKick) { notify(Self.transmitQueue) }
            try loop.add(connectTimer.fd) { [weak self, connectTimer] in
                connectTimer.drain()
                self?.expireUnansweredConnects()
                return .keep
            }
            try loop.add(listener) { [weak self] in
                self?.acceptHostClients()
                return .keep
            }
            for (fd, listening) in portListeners {
                try loop.add(fd) { [weak self, receiveKick] in
                    if self?.acceptPortClients(fd, guestPort: listening.port) == true { receiveKick.raise() }
                    return .keep
                }
            }
        } catch {
            throw .invalid("vsock: \(error)")
        }
    }

    /// Removes the socket file so that host clients see the VM is gone (the VMM calls this as
    /// it stops; the device may outlive the call).
    public func removeSocketFile() {
        unlink(socketPath)
        for listening in portListeners.values { unlink(listening.path) }
    }

    /// Live connections (for status and tests).
    public var connectionCount: Int { state.withLock { $0.connections.count } }

    // MARK: - VirtioDevice

    public var deviceType: UInt16 { 19 }
    public var features: UInt64 { 0 }
    public var queueMaxSizes: [UInt16] { Self.queueSizes }
    /// Two: configuration changes and one vector all queues share, as with QEMU's
    /// vhost-vsock-pci. With a vector per queue, Linux puts them on different vCPUs, and each
    /// credit update the guest sends (a transmit completion) interrupted a second vCPU besides
    /// the one taking the data. Shared, and sent once per batch of the device thread's events
    /// (``VirtioPCIDevice/batchInterrupts(on:)``), the completion and the data it lets through
    /// make one interrupt: measured in the testbed, 0.9–1.4 thousand per 128 MiB host → guest
    /// instead of 1.3–1.6 thousand, as many as QEMU's guest takes.
    public var msixVectors: Int { 2 }

    public func readConfig(offset: Int, data: UnsafeMutableRawBufferPointer) {
        // struct virtio_vsock_config { le64 guest_cid; }
        var config = [UInt8](repeating: 0, count: 8)
        config.storeLE(guestCID, at: 0)
        for i in 0..<data.count { data[i] = offset + i < config.count ? config[offset + i] : 0 }
    }

    public func reset() {
        state.withLock { state in
            for fd in state.connections.keys { forget(fd) }
            state = State()
        }
    }

    public func process(queue index: Int, _ queue: inout Virtqueue, memory: GuestMemory) throws(VirtqueueError) -> Bool
    {
        switch index {
        case Self.transmitQueue: return try drainTransmit(&queue, memory: memory)
        case Self.receiveQueue: return try fillReceive(&queue, memory: memory)
        default: return false  // event queue: transport resets only happen on migration
        }
    }

    /// A host client that went away must fail the send, not raise SIGPIPE in the VMM.
    let noSignal = Int32(MSG_NOSIGNAL)
}
