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
    /// What each connection may have in flight towards the host (our buf_alloc).
    public static let bufferAllocation: UInt32 = 256 << 10
    /// Largest payload put in one receive buffer.
    static let maxPacketPayload = 64 << 10
    /// Most bytes, and receive buffers, one read from a host socket fills: Linux posts 4 KiB
    /// buffers, and a readv across many of them costs one system call instead of one each.
    static let maxBatchBytes = 256 << 10
    static let maxBatchBuffers = 64
    /// Host bytes read ahead of the guest's credit, at most, per connection and in all (buffers
    /// of this size are allocated on first use and given back once emptied or their stream ends).
    static let readAheadBytes = 256 << 10
    static let maxReadAheadBuffers = 64
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
        /// Connections with a read-ahead buffer.
        var readAheadBuffers = 0
    }

    public let guestCID: UInt64
    public let socketPath: String
    private let listener: Int32
    /// Per-port listeners: descriptor → (guest port, socket path).
    private let portListeners: [Int32: (port: UInt32, path: String)]
    let state = Mutex(State())
    /// Serves the receive queue on the device thread: raised there (after transmit packets or a
    /// host socket's readiness), it costs no system call.
    private let receiveKick: LoopSignal
    /// Resumes the transmit queue once the replies it was waiting on have gone out.
    private let transmitKick: LoopSignal
    /// Ticks that expire host connections the guest never answered.
    private let connectTimer: IntervalTimer
    /// This device's wait for the guest to accept a delivered REQUEST.
    let connectTimeoutMilliseconds: UInt64
    /// The send buffer asked for on each host socket.
    let hostSendBufferBytes: Int32
    private let loop = Mutex<EventLoop?>(nil)
    private let log: @Sendable (String) -> Void

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
    public var queueMaxSizes: [UInt16] { [256, 256, 64] }

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

    // MARK: - Guest → host (transmit queue)

    private func drainTransmit(_ queue: inout Virtqueue, memory: GuestMemory) throws(VirtqueueError) -> Bool {
        var completed = false
        let wake = try state.withLock { (state: inout State) throws(VirtqueueError) -> Bool in
            while state.replies.count < Self.maxControlBacklog, let chain = try queue.popChain(memory: memory) {
                if let header = try readHeader(of: chain, memory: memory) {
                    handle(header, payloadOf: chain, memory: memory, &state)
                } else {
                    log("vsock: dropped a transmit buffer of \(chain.readableLength) bytes, shorter than a header")
                }
                try queue.pushUsed(head: chain.head, written: 0, memory: memory)
                completed = true
            }
            return state.hasPackets || state.connections.values.contains { $0.wantsToSendData }
        }
        if wake { receiveKick.raise() }
        return completed
    }

    private func handle(
        _ header: VsockHeader, payloadOf chain: DescriptorChain, memory: GuestMemory, _ state: inout State
    ) {
        guard header.sourceCID == guestCID, header.destinationCID == VsockHeader.hostCID,
            header.type == VsockHeader.typeStream
        else {
            if header.op != VsockHeader.Op.reset.rawValue { replyReset(to: header, &state) }
            return
        }
        let key = VsockConnectionKey(hostPort: header.destinationPort, guestPort: header.sourcePort)
        let fd = state.byKey[key]
        if let fd { state.connections[fd]?.updatePeerCredit(header) }
        switch header.knownOp {
        case .request:
            // A second REQUEST on a live pair ends the old stream.
            if let fd { return closeAndReset(fd, &state) }
            connectToHost(header, key: key, &state)
        case .response:
            guard let fd, state.connections[fd]?.state == .connecting else { return resetStream(header, fd, &state) }
            state.connections[fd]?.state = .established
            if state.connections[fd]?.announcesAcceptance == true {
                let ok = Array("OK \(key.hostPort)\n".utf8)
                guard ok.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, noSignal) }) == ok.count else {
                    return closeAndReset(fd, &state)
                }
            }
            updateInterest(fd, &state)
        case .rw:
            guard let fd, state.connections[fd]?.state == .established else { return resetStream(header, fd, &state) }
            forwardPayload(header, of: chain, memory: memory, to: fd, &state)
        case .shutdown:
            guard let fd else { return }
            if header.flags & VsockHeader.shutdownSend != 0 { state.connections[fd]?.guestStoppedSending = true }
            if header.flags & VsockHeader.shutdownReceive != 0 { state.connections[fd]?.guestStoppedReceiving = true }
            finishHalfClosed(fd, &state)
        case .reset:
            guard let fd else { return }
            forget(fd)
            removeConnection(fd, &state)
        case .creditUpdate:
            break  // its credit was taken above; the receive queue is kicked once drained
        case .creditRequest:
            guard let fd, var connection = state.connections[fd] else { return replyReset(to: header, &state) }
            state.replies.append(packet(.creditUpdate, for: &connection))
            state.connections[fd] = connection
        case nil:
            resetStream(header, fd, &state)
        }
    }

    /// Ends the stream a bad packet belongs to (closing its host socket), or answers RST when
    /// it belongs to none.
    private func resetStream(_ header: VsockHeader, _ fd: Int32?, _ state: inout State) {
        if let fd { closeAndReset(fd, &state) } else { replyReset(to: header, &state) }
    }

    /// A guest REQUEST to host port P: connect to `<socketPath>_P`, answer RESPONSE or RST.
    private func connectToHost(_ header: VsockHeader, key: VsockConnectionKey, _ state: inout State) {
        guard state.connections.count < Self.maxConnections else {
            log("vsock: refused guest port \(key.guestPort) → host port \(key.hostPort): too many connections")
            return replyReset(to: header, &state)
        }
        let fd: Int32
        do { fd = try UnixSocket.connect(to: "\(socketPath)_\(key.hostPort)") } catch {
            return replyReset(to: header, &state)
        }
        var connection = VsockConnection(fd: fd, key: key, state: .established)
        connection.updatePeerCredit(header)
        guard register(fd) else {
            close(fd)
            return replyReset(to: header, &state)
        }
        state.control.append(packet(.response, for: &connection))
        state.connections[fd] = connection
        state.byKey[key] = fd
        updateInterest(fd, &state)
    }

    /// Writes an RW packet's payload to the host socket; what the socket does not take now
    /// waits, bounded by the credit the guest was given.
    private func forwardPayload(
        _ header: VsockHeader, of chain: DescriptorChain, memory: GuestMemory, to fd: Int32, _ state: inout State
    ) {
        guard var connection = state.connections[fd] else { return }
        let length = Int(header.length)
        let carried = chain.readableLength - VsockHeader.size
        guard length <= carried else {
            log("vsock: guest port \(connection.key?.guestPort ?? 0) sent a packet shorter than its header says")
            return closeAndReset(fd, &state)
        }
        guard UInt64(connection.unforwarded) + UInt64(length) <= UInt64(Self.bufferAllocation),
            !connection.guestStoppedSending
        else {
            log("vsock: guest port \(connection.key?.guestPort ?? 0) sent beyond its credit; resetting the stream")
            return closeAndReset(fd, &state)
        }
        // The payload follows the header in the readable buffers.
        var remaining = length
        var wroteAll = connection.pendingToHost.isEmpty
        for buffer in chain.segments(writable: false, skipping: VsockHeader.size, limit: length) {
            let count = Int(buffer.length)
            guard let bytes = try? memory.buffer(at: buffer.address, count: count) else {
                return closeAndReset(fd, &state)
            }
            remaining -= count
            var done = 0
            if wroteAll {
                while done < count {
                    let n = send(fd, bytes.baseAddress! + done, count - done, noSignal)
                    if n > 0 {
                        done += n
                    } else if n < 0 && errno == EINTR {
                        continue
                    } else if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                        break
                    } else {
                        return closeAndReset(fd, &state)
                    }
                }
                connection.forwarded &+= UInt32(done)
                if done < count { wroteAll = false }
            }
            if done < count { connection.pendingToHost += UnsafeRawBufferPointer(rebasing: bytes[done...]) }
        }
        connection.receivedFromGuest &+= UInt32(length - remaining)
        announceCreditIfDue(&connection, &state)
        state.connections[fd] = connection
        updateInterest(fd, &state)
    }

    /// Tells the guest about freed credit once half of its window has been forwarded since it
    /// last heard, so that a sender blocked on credit always wakes up.
    private func announceCreditIfDue(_ connection: inout VsockConnection, _ state: inout State) {
        if connection.forwarded &- connection.forwardedAnnounced >= Self.bufferAllocation / 2 {
            state.control.append(packet(.creditUpdate, for: &connection))
        }
    }

    /// After a shutdown from either side: pass a guest's end of sending on to the host socket
    /// once everything before it was written; close when neither side will send any more and
    /// what the guest sent has all reached the host socket (a guest that closes right after its
    /// last write must not lose what still waits for a slow host reader).
    private func finishHalfClosed(_ fd: Int32, _ state: inout State) {
        guard let connection = state.connections[fd] else { return }
        guard connection.pendingToHost.isEmpty else { return updateInterest(fd, &state) }
        if connection.guestStoppedSending {
            shutdown(fd, Int32(SHUT_WR))
        }
        let guestDone = connection.guestStoppedSending && connection.guestStoppedReceiving
        let bothDone = connection.guestStoppedSending && connection.hostClosedSending
        if guestDone || bothDone {
            closeAndReset(fd, &state)
        } else {
            updateInterest(fd, &state)
        }
    }

    // MARK: - Host → guest (receive queue)

    private func fillReceive(_ queue: inout Virtqueue, memory: GuestMemory) throws(VirtqueueError) -> Bool {
        try state.withLock { (state: inout State) throws(VirtqueueError) -> Bool in
            var completed = false
            while state.hasPackets || state.connections.values.contains(where: { $0.wantsToSendData }) {
                guard let chain = try queue.popChain(memory: memory) else { break }
                let room = chain.writableLength
                guard room >= VsockHeader.size else {
                    throw .malformedRequest("vsock receive buffer of \(room) bytes cannot hold a header")
                }
                if state.hasPackets {
                    let header: VsockHeader
                    if !state.control.isEmpty {
                        header = state.control.removeFirst()
                    } else {
                        header = state.replies.removeFirst()
                        if state.replies.count == Self.maxControlBacklog - 1 { transmitKick.raise() }
                    }
                    if header.op == VsockHeader.Op.request.rawValue,
                        let fd = state.byKey[
                            VsockConnectionKey(hostPort: header.sourcePort, guestPort: header.destinationPort)]
                    {
                        state.connections[fd]?.deliveredAtMilliseconds = IntervalTimer.nowMilliseconds()
                    }
                    try writeHeader(header, into: chain, memory: memory)
                    try queue.pushUsed(head: chain.head, written: UInt32(VsockHeader.size), memory: memory)
                    completed = true
                    continue
                }
                guard room > VsockHeader.size else {
                    // No room for data (Linux never posts such buffers): fill it with a credit
                    // update for the stream that waits, so the queue moves on and the next
                    // buffer gets the data.
                    let ready = state.connections.keys.filter { state.connections[$0]?.wantsToSendData == true }
                    guard let fd = ready.min(), var connection = state.connections[fd] else {
                        queue.undoPop()
                        break
                    }
                    let header = packet(.creditUpdate, for: &connection)
                    state.connections[fd] = connection
                    try writeHeader(header, into: chain, memory: memory)
                    try queue.pushUsed(head: chain.head, written: UInt32(VsockHeader.size), memory: memory)
                    completed = true
                    continue
                }
                if try sendData(first: chain, room: room, queue: &queue, memory: memory, &state) {
                    completed = true
                } else if !state.hasPackets {
                    // The socket had nothing after all (its readiness was stale): keep the buffer.
                    queue.undoPop()
                    if !state.connections.values.contains(where: { $0.wantsToSendData }) { break }
                } else {
                    queue.undoPop()  // a control packet (a shutdown) came up instead; loop sends it
                }
            }
            return completed
        }
    }

    /// Gives one connection's host bytes to the guest: what was read ahead first, else the host
    /// socket read straight into receive buffers after their headers. `first` and as many more
    /// buffers as the guest's credit and ``maxBatchBytes`` allow are filled with one copy or one
    /// readv; each buffer used becomes one packet. Returns false when the socket had no data (its
    /// connection is then marked idle); `first` is then the caller's to give back.
    private func sendData(
        first: DescriptorChain, room: Int, queue: inout Virtqueue, memory: GuestMemory, _ state: inout State
    ) throws(VirtqueueError) -> Bool {
        let ready = state.connections.keys.filter { state.connections[$0]?.wantsToSendData == true }.sorted()
        guard let fd = ready.first(where: { $0 > state.lastServed }) ?? ready.first,
            var connection = state.connections[fd], connection.key != nil
        else { return false }
        state.lastServed = fd
        let readAhead = connection.readAhead.flatMap { $0.isEmpty ? nil : $0 }
        let budget = min(Int(connection.peerCredit), Self.maxBatchBytes, readAhead?.count ?? Int.max)

        // The buffers to fill and how much payload each takes; extra ones are popped while the
        // budget lasts, and given back (in reverse, as popped) if the read comes up short.
        var chains: [PlannedPacket] = []
        chains.reserveCapacity(Self.maxBatchBuffers)
        chains.append(
            PlannedPacket(chain: first, capacity: min(room - VsockHeader.size, Self.maxPacketPayload, budget)))
        var planned = chains[0].capacity
        while planned < budget, chains.count < Self.maxBatchBuffers, let next = try queue.popChain(memory: memory) {
            let nextRoom = next.writableLength
            guard nextRoom > VsockHeader.size else {
                queue.undoPop()
                break
            }
            let capacity = min(nextRoom - VsockHeader.size, Self.maxPacketPayload, budget - planned)
            chains.append(PlannedPacket(chain: next, capacity: capacity))
            planned += capacity
        }
        var vectors: [iovec] = []
        vectors.reserveCapacity(chains.count)
        for planned in chains {
            for buffer in planned.chain.segments(writable: true, skipping: VsockHeader.size, limit: planned.capacity) {
                guard let bytes = try? memory.buffer(at: buffer.address, count: Int(buffer.length)) else {
                    for _ in 1..<chains.count { queue.undoPop() }
                    throw .bufferOutsideMemory(address: buffer.address, length: buffer.length)
                }
                vectors.append(iovec(iov_base: bytes.baseAddress, iov_len: bytes.count))
            }
        }
        let n: Int
        if let readAhead {
            // Bytes read ahead go first, in order; the budget never exceeds what is held. An
            // empty ring is given back, so that streams that stalled once do not keep one.
            n = vectors.reduce(0) { $0 + readAhead.take(into: .init(start: $1.iov_base, count: $1.iov_len)) }
            if readAhead.isEmpty {
                connection.readAhead = nil
                state.readAheadBuffers -= 1
            }
        } else {
            // A failure the read-ahead met is reported now, after every byte before it.
            var result = -1
            var readError = connection.hostReadError
            if readError == 0 {
                repeat { result = readv(fd, vectors, Int32(vectors.count)) } while result < 0 && errno == EINTR
                if result < 0 { readError = errno }
            }
            guard result > 0 else {
                for _ in 1..<chains.count { queue.undoPop() }
                noteEmptyRead(result, error: readError, fd, &connection, &state)
                return false
            }
            n = result
            connection.noteRead(n, of: planned)
        }
        // Each buffer carries what landed in it; the ones the read did not reach go back.
        var remaining = n
        var used = 0
        for planned in chains where remaining > 0 {
            let (chain, length) = (planned.chain, min(planned.capacity, remaining))
            var header = packet(.rw, for: &connection)
            header.length = UInt32(length)
            try writeHeader(header, into: chain, memory: memory)
            try queue.pushUsed(head: chain.head, written: UInt32(VsockHeader.size + length), memory: memory)
            remaining -= length
            used += 1
        }
        for _ in used..<chains.count { queue.undoPop() }
        connection.sentToGuest &+= UInt32(n)
        readAheadIfDue(fd, &connection, &state)
        state.connections[fd] = connection
        return true
    }

    /// A read of the host socket that brought nothing: `result` is readv's (0 at the end of the
    /// stream, -1 with `error`).
    private func noteEmptyRead(
        _ result: Int, error: Int32, _ fd: Int32, _ connection: inout VsockConnection, _ state: inout State
    ) {
        if result < 0 && (error == EAGAIN || error == EWOULDBLOCK) {
            connection.hostReadable = false
            state.connections[fd] = connection
            return
        }
        // EOF: the host will send no more (it may still read: a half-close). When the guest is
        // done sending too, or the socket failed, the stream is over.
        connection.hostReadable = false
        connection.hostClosedSending = true
        state.connections[fd] = connection
        if result < 0 || connection.guestStoppedSending {
            closeAndReset(fd, &state)
        } else {
            state.control.append(packet(.shutdown, for: &connection, flags: VsockHeader.shutdownSend))
            state.connections[fd] = connection
            updateInterest(fd, &state)
        }
    }

    /// Reads the host socket into the connection's read-ahead buffer when the guest's credit is
    /// spent (see ``VsockReadAhead``), at most ``readAheadBytes`` per connection and
    /// ``maxReadAheadBuffers`` buffers in all. The end of the stream, or a failure (which the
    /// kernel reports only once, so it is kept), is left for the ordinary read, which comes once
    /// the buffer has gone to the guest, so that nothing overtakes the bytes held.
    private func readAheadIfDue(_ fd: Int32, _ connection: inout VsockConnection, _ state: inout State) {
        guard connection.wantsToReadAhead else { return }
        if connection.readAhead == nil {
            guard state.readAheadBuffers < Self.maxReadAheadBuffers else { return }
            connection.readAhead = VsockReadAhead(capacity: Self.readAheadBytes)
            state.readAheadBuffers += 1
        }
        guard let readAhead = connection.readAhead, readAhead.room > 0 else { return }
        let asked = readAhead.room
        let n = readAhead.read(from: fd)
        if n > 0 { connection.noteRead(n, of: asked) }
        if n < 0 {
            if errno == EAGAIN || errno == EWOULDBLOCK {
                connection.hostReadable = false
            } else {
                connection.hostReadError = errno
            }
        }
    }

    /// A receive buffer taken for one read, and how much payload it may carry.
    private struct PlannedPacket {
        let chain: DescriptorChain
        let capacity: Int
    }

    // MARK: - Host clients (the Unix socket at socketPath)

    private func acceptHostClients() {
        while let fd = UnixSocket.accept(listener) {
            let accepted = state.withLock { state -> Bool in
                guard state.connections.count < Self.maxConnections, register(fd) else { return false }
                state.connections[fd] = VsockConnection(fd: fd, key: nil, state: .awaitingConnectLine([]))
                return true
            }
            if !accepted {
                log("vsock: refused a host client: too many connections")
                close(fd)
            }
        }
    }

    /// Accepts clients of a per-port listener: each asks the guest for `guestPort` at once.
    /// Returns whether a request is waiting for a receive buffer.
    private func acceptPortClients(_ listener: Int32, guestPort: UInt32) -> Bool {
        var requested = false
        while let fd = UnixSocket.accept(listener) {
            let accepted = state.withLock { state -> Bool in
                guard state.connections.count < Self.maxConnections, register(fd) else { return false }
                var connection = VsockConnection(fd: fd, key: nil, state: .connecting)
                connection.announcesAcceptance = false
                requestGuestPort(guestPort, fd, &connection, &state)
                return true
            }
            if accepted {
                requested = true
            } else {
                log("vsock: refused a client of guest port \(guestPort): too many connections")
                close(fd)
            }
        }
        return requested
    }

    /// Resets host-initiated streams the guest has not answered within the connect timeout; a
    /// CONNECT client is told why before it is closed, so that it can tell this from a refusal.
    private func expireUnansweredConnects() {
        let now = IntervalTimer.nowMilliseconds()
        let wake = state.withLock { state -> Bool in
            let expired = state.connections.values.filter {
                guard $0.state == .connecting else { return false }
                if let delivered = $0.deliveredAtMilliseconds {
                    return now &- delivered >= connectTimeoutMilliseconds
                }
                return now &- $0.requestedAtMilliseconds >= Self.queuedConnectTimeoutMilliseconds
            }
            for connection in expired {
                let why =
                    connection.deliveredAtMilliseconds == nil
                    ? "the guest took no receive buffer within \(Self.queuedConnectTimeoutMilliseconds) ms"
                    : "the guest did not accept within \(connectTimeoutMilliseconds) ms"
                log("vsock: guest port \(connection.key?.guestPort ?? 0): \(why); closing the host client")
                if connection.announcesAcceptance {
                    let reply = Array("ERROR \(why)\n".utf8)
                    _ = reply.withUnsafeBytes { send(connection.fd, $0.baseAddress, $0.count, noSignal) }
                }
                closeAndReset(connection.fd, &state)
            }
            return !expired.isEmpty
        }
        if wake { receiveKick.raise() }
    }

    /// Readiness of a connection's host socket, on the loop's thread.
    private func hostSocketReady(_ fd: Int32, _ readiness: EventLoop.Readiness) {
        let wake = state.withLock { state -> Bool in
            guard var connection = state.connections[fd] else { return false }
            switch connection.state {
            case .awaitingConnectLine(let line):
                readConnectLine(fd, so: line, &connection, &state)
            case .connecting:
                // The client left before the guest answered.
                if !readiness.isDisjoint(with: [.hangUp, .peerClosedWriting, .error]) { closeAndReset(fd, &state) }
            case .established:
                if readiness.contains(.writable) { flushPending(fd, &state) }
                guard state.connections[fd] != nil else { break }
                if !readiness.isDisjoint(with: [.readable, .peerClosedWriting, .hangUp, .error]) {
                    state.connections[fd]?.hostReadable = true
                }
                if !readiness.isDisjoint(with: [.peerClosedWriting, .hangUp, .error]) {
                    state.connections[fd]?.hostEndReported = true
                }
                if var connection = state.connections[fd], connection.wantsToReadAhead {
                    readAheadIfDue(fd, &connection, &state)
                    state.connections[fd] = connection
                }
                if !readiness.isDisjoint(with: [.hangUp, .error]) {
                    // Reported for as long as it is watched: stop watching. What is left to
                    // read is read by the receive queue, up to EOF; a write now fails and resets.
                    loop.withLock { $0 }?.remove(fd)
                    // Bytes already waiting for the host would otherwise wait for good (nothing
                    // watches for writability now): try them, so that the failure resets.
                    if state.connections[fd]?.pendingToHost.isEmpty == false { flushPending(fd, &state) }
                }
            }
            return state.hasPackets || state.connections.values.contains { $0.wantsToSendData }
        }
        if wake { receiveKick.raise() }
    }

    /// Reads `CONNECT <port>\n` (at most 32 bytes); on a good line, asks the guest to accept.
    private func readConnectLine(
        _ fd: Int32, so far: [UInt8], _ connection: inout VsockConnection, _ state: inout State
    ) {
        var line = far
        var byte: UInt8 = 0
        while line.count < 32 {
            let n = read(fd, &byte, 1)
            if n == 1 {
                if byte == UInt8(ascii: "\n") { break }
                line.append(byte)
                continue
            }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                state.connections[fd]?.state = .awaitingConnectLine(line)
                return
            }
            return closeAndForgetQuietly(fd, &state)  // EOF or error before a full line
        }
        let text = String(decoding: line, as: UTF8.self)
        guard byte == UInt8(ascii: "\n"), text.hasPrefix("CONNECT "), let port = UInt32(text.dropFirst(8)) else {
            let reply = Array("ERROR expected CONNECT <port>\n".utf8)
            _ = reply.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, noSignal) }
            return closeAndForgetQuietly(fd, &state)
        }
        requestGuestPort(port, fd, &connection, &state)
    }

    /// Gives a host client a host port and sends the guest a REQUEST for guest `port`.
    private func requestGuestPort(
        _ port: UInt32, _ fd: Int32, _ connection: inout VsockConnection, _ state: inout State
    ) {
        var hostPort = state.nextHostPort
        while state.byKey[VsockConnectionKey(hostPort: hostPort, guestPort: port)] != nil { hostPort &+= 1 }
        state.nextHostPort = hostPort &+ 1 < Self.firstHostPort ? Self.firstHostPort : hostPort &+ 1
        let key = VsockConnectionKey(hostPort: hostPort, guestPort: port)
        connection.key = key
        connection.state = .connecting
        connection.requestedAtMilliseconds = IntervalTimer.nowMilliseconds()
        state.control.append(packet(.request, for: &connection))
        state.connections[fd] = connection
        state.byKey[key] = fd
        updateInterest(fd, &state)
    }

    /// Writes what waits for the host socket; announces credit as it frees up.
    private func flushPending(_ fd: Int32, _ state: inout State) {
        guard var connection = state.connections[fd] else { return }
        while !connection.pendingToHost.isEmpty {
            let n = connection.pendingToHost.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, noSignal) }
            if n > 0 {
                connection.pendingToHost.removeFirst(n)
                connection.forwarded &+= UInt32(n)
            } else if n < 0 && errno == EINTR {
                continue
            } else if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                break
            } else {
                return closeAndReset(fd, &state)
            }
        }
        announceCreditIfDue(&connection, &state)
        state.connections[fd] = connection
        finishHalfClosed(fd, &state)
    }

    // MARK: - Helpers

    /// The header at the start of a transmit chain, read in place when its first buffer holds it
    /// whole (as Linux lays packets out); nil when the chain is shorter than a header.
    private func readHeader(of chain: DescriptorChain, memory: GuestMemory) throws(VirtqueueError) -> VsockHeader? {
        if let first = chain.buffers.first, !first.isWritable, first.length >= VsockHeader.size,
            let raw = try? memory.buffer(at: first.address, count: VsockHeader.size)
        {
            return VsockHeader(UnsafeRawBufferPointer(raw))
        }
        return VsockHeader(try chain.readBytes(memory: memory, limit: VsockHeader.size))
    }

    /// Writes a header at the start of a receive chain, in place when its first writable buffer
    /// has room for all of it.
    private func writeHeader(_ header: VsockHeader, into chain: DescriptorChain, memory: GuestMemory)
        throws(VirtqueueError)
    {
        if let first = chain.buffers.first(where: \.isWritable), first.length >= VsockHeader.size,
            let raw = try? memory.buffer(at: first.address, count: VsockHeader.size)
        {
            return header.store(into: raw)
        }
        try chain.writeBytes(header.encoded, memory: memory)
    }

    /// A host client that went away must fail the send, not raise SIGPIPE in the VMM.
    private let noSignal = Int32(MSG_NOSIGNAL)

    /// A header for `op` on `connection`'s stream, carrying our current credit.
    private func packet(_ op: VsockHeader.Op, for connection: inout VsockConnection, flags: UInt32 = 0)
        -> VsockHeader
    {
        let key = connection.key ?? VsockConnectionKey(hostPort: 0, guestPort: 0)
        connection.forwardedAnnounced = connection.forwarded
        return VsockHeader(
            sourceCID: VsockHeader.hostCID, destinationCID: guestCID, sourcePort: key.hostPort,
            destinationPort: key.guestPort, op: op, flags: flags, bufferAllocation: Self.bufferAllocation,
            forwardCount: connection.forwarded)
    }

    /// A reset answering a packet that has no stream (or a bad one).
    private func replyReset(to header: VsockHeader, _ state: inout State) {
        state.replies.append(
            VsockHeader(
                sourceCID: header.destinationCID, destinationCID: header.sourceCID, sourcePort: header.destinationPort,
                destinationPort: header.sourcePort, op: .reset))
    }

    private func closeAndReset(_ fd: Int32, _ state: inout State) {
        if var connection = state.connections[fd], let key = connection.key,
            connection.state != .awaitingConnectLine([])
        {
            // A REQUEST the guest has not seen yet is withdrawn instead: nothing to reset.
            let queuedRequest = state.control.firstIndex {
                $0.op == VsockHeader.Op.request.rawValue && $0.sourcePort == key.hostPort
                    && $0.destinationPort == key.guestPort
            }
            if connection.state == .connecting, let queuedRequest {
                state.control.remove(at: queuedRequest)
            } else {
                state.control.append(packet(.reset, for: &connection))
            }
        }
        forget(fd)
        removeConnection(fd, &state)
    }

    private func closeAndForgetQuietly(_ fd: Int32, _ state: inout State) {
        forget(fd)
        removeConnection(fd, &state)
    }

    private func removeConnection(_ fd: Int32, _ state: inout State) {
        if let key = state.connections[fd]?.key { state.byKey[key] = nil }
        if state.connections[fd]?.readAhead != nil { state.readAheadBuffers -= 1 }
        state.connections[fd] = nil
    }

    /// Stops watching and closes a host socket.
    private func forget(_ fd: Int32) {
        loop.withLock { $0 }?.remove(fd)
        close(fd)
    }

    /// Watches a new host socket. It also gets a large send buffer: the device writes the
    /// guest's stream into it, and with the default one it would often wait for room (a Unix
    /// socket reports room only once its queue is down to a quarter of the buffer).
    private func register(_ fd: Int32) -> Bool {
        guard let loop = loop.withLock({ $0 }) else { return false }
        UnixSocket.setSendBuffer(fd, to: hostSendBufferBytes)
        do {
            try loop.add(fd, interest: .readable) { [weak self] readiness in
                self?.hostSocketReady(fd, readiness)
                return .keep
            }
            return true
        } catch {
            log("vsock: cannot watch a host socket: \(error)")
            return false
        }
    }

    /// Watch an established stream for reading edge-triggered, so that the interest stays put
    /// as the socket empties and fills (``VsockConnection/hostReadable`` remembers an arrival
    /// until a read comes up short); for writing only while bytes wait for the host. The loop is
    /// told only of a change: this runs for every packet, and each telling is a system call.
    private func updateInterest(_ fd: Int32, _ state: inout State) {
        guard let connection = state.connections[fd], let loop = loop.withLock({ $0 }) else { return }
        var interest: EventLoop.Interest = []
        switch connection.state {
        case .awaitingConnectLine: interest = .readable
        case .connecting: interest = []
        case .established:
            if !connection.hostClosedSending && !connection.guestStoppedReceiving {
                interest.formUnion([.readable, .edgeTriggered])
            }
            if !connection.pendingToHost.isEmpty { interest.insert(.writable) }
        }
        guard connection.watchedInterest != interest.rawValue else { return }
        state.connections[fd]?.watchedInterest = interest.rawValue
        loop.setInterest(fd, interest)
    }
}
