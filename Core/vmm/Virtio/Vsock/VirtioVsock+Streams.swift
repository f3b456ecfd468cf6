import EventLoop
import GuestMemory
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Headers, resets and the bookkeeping of host sockets shared by both directions.
extension VirtioVsock {
    // MARK: - Helpers

    /// The header at the start of a transmit chain, read in place when its first buffer holds it
    /// whole (as Linux lays packets out); nil when the chain is shorter than a header.
    func readHeader(of chain: DescriptorChain, memory: GuestMemory) throws(VirtqueueError) -> VsockHeader? {
        if let first = chain.buffers.first, !first.isWritable, first.length >= VsockHeader.size,
            let raw = try? memory.buffer(at: first.address, count: VsockHeader.size)
        {
            return VsockHeader(UnsafeRawBufferPointer(raw))
        }
        return VsockHeader(try chain.readBytes(memory: memory, limit: VsockHeader.size))
    }

    /// Writes a header at the start of a receive chain, in place when its first writable buffer
    /// has room for all of it.
    func writeHeader(_ header: VsockHeader, into chain: DescriptorChain, memory: GuestMemory)
        throws(VirtqueueError)
    {
        if let spot = headerSpot(in: chain, memory: memory) { return header.store(into: spot) }
        try chain.writeBytes(header.encoded, memory: memory)
    }

    /// Where a header goes in place in a receive chain: its first writable buffer, when that
    /// holds a whole header (Linux gives the header a buffer of its own).
    func headerSpot(in chain: DescriptorChain, memory: GuestMemory) -> UnsafeMutableRawBufferPointer? {
        // By index: iterating would copy the chain's buffers, once per packet.
        for index in 0..<chain.buffers.count {
            let buffer = chain.buffers[index]
            guard buffer.isWritable else { continue }
            guard buffer.length >= VsockHeader.size else { return nil }
            return try? memory.buffer(at: buffer.address, count: VsockHeader.size)
        }
        return nil
    }

    /// Sends as much of `bytes` as the host socket takes now: the count sent (short of all of
    /// them once the socket is full), or nil when the socket failed.
    func sendAvailable(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Int? {
        guard let base = bytes.baseAddress else { return 0 }
        var done = 0
        while done < bytes.count {
            let n = send(fd, base + done, bytes.count - done, noSignal)
            if n > 0 {
                done += n
            } else if n < 0 && errno == EINTR {
                continue
            } else if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                break
            } else {
                return nil
            }
        }
        return done
    }

    /// A header for `op` on `connection`'s stream, carrying our current credit.
    func packet(_ op: VsockHeader.Op, for connection: inout VsockConnection, flags: UInt32 = 0)
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
    func replyReset(to header: VsockHeader, _ state: inout State) {
        state.replies.append(
            VsockHeader(
                sourceCID: header.destinationCID, destinationCID: header.sourceCID, sourcePort: header.destinationPort,
                destinationPort: header.sourcePort, op: .reset))
    }

    func closeAndReset(_ fd: Int32, _ state: inout State) {
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

    func closeAndForgetQuietly(_ fd: Int32, _ state: inout State) {
        forget(fd)
        removeConnection(fd, &state)
    }

    func removeConnection(_ fd: Int32, _ state: inout State) {
        if let key = state.connections[fd]?.key { state.byKey[key] = nil }
        if let connection = state.connections[fd] { releaseReadAhead(of: connection, &state) }
        state.connections[fd] = nil
    }

    /// Gives back the receive buffers `connection` filled ahead (empty: the guest takes no more
    /// of its bytes), and forgets what it spilled.
    func releaseReadAhead(of connection: VsockConnection, _ state: inout State) {
        guard let readAhead = connection.readAhead, !readAhead.isEmpty else { return }
        let heads = readAhead.removeAll()
        state.heldBuffers -= heads.count
        state.returnedBuffers += heads
    }

    /// Copies out what `connection` read ahead once the guest's buffer has shrunk below a
    /// packet it holds, which would then never fit the guest's credit.
    func spillReadAheadIfTooLong(of connection: VsockConnection, _ state: inout State) {
        guard let readAhead = connection.readAhead, readAhead.packetCount > 0,
            readAhead.longestPacket > Int(connection.peerBufferAllocation)
        else { return }
        let heads = readAhead.spill()
        state.heldBuffers -= heads.count
        state.returnedBuffers += heads
    }

    /// Stops watching and closes a host socket.
    func forget(_ fd: Int32) {
        loop.withLock { $0 }?.remove(fd)
        close(fd)
    }

    /// Watches a new host socket. It also gets a large send buffer: the device writes the
    /// guest's stream into it, and with the default one it would often wait for room (a Unix
    /// socket reports room only once its queue is down to a quarter of the buffer).
    func register(_ fd: Int32) -> Bool {
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
    func updateInterest(_ fd: Int32, _ state: inout State) {
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
