import EventLoop
import GuestMemory
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Host → guest: the receive queue filled from host sockets and the read-ahead rings.
extension VirtioVsock {
    // MARK: - Host → guest (receive queue)

    func fillReceive(_ queue: inout Virtqueue, memory: GuestMemory) throws(VirtqueueError) -> Bool {
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
    func sendData(
        first: DescriptorChain, room: Int, queue: inout Virtqueue, memory: GuestMemory, _ state: inout State
    ) throws(VirtqueueError) -> Bool {
        guard let fd = nextSender(state), var connection = state.connections[fd], connection.key != nil
        else { return false }
        state.lastServed = fd
        let readAhead = connection.readAhead.flatMap { $0.isEmpty ? nil : $0 }
        let budget = min(Int(connection.peerCredit), Self.maxBatchBytes, readAhead?.count ?? Int.max)

        // The buffers to fill and how much payload each takes; extra ones are popped while the
        // budget lasts (those whose header has a place of its own, in one buffer), and given
        // back (in reverse, as popped) if the read comes up short.
        let batch = receiveBatch
        batch.removeAll()
        let firstCapacity = min(room - VsockHeader.size, Self.maxPacketPayload, budget)
        batch.append(.init(head: first.head, capacity: firstCapacity, header: headerSpot(in: first, memory: memory)))
        var planned = firstCapacity
        do {
            try addVectors(of: first, capacity: firstCapacity, to: batch, memory: memory)
            while planned < budget, !batch.isFull, let next = try queue.popChain(memory: memory) {
                let nextRoom = next.writableLength
                guard nextRoom > VsockHeader.size, next.buffers.count <= batch.vectorRoom,
                    let header = headerSpot(in: next, memory: memory)
                else {
                    queue.undoPop()
                    break
                }
                let capacity = min(nextRoom - VsockHeader.size, Self.maxPacketPayload, budget - planned)
                batch.append(.init(head: next.head, capacity: capacity, header: header))
                planned += capacity
                try addVectors(of: next, capacity: capacity, to: batch, memory: memory)
            }
        } catch {
            for _ in 1..<batch.packetCount { queue.undoPop() }
            throw error
        }
        let n: Int
        if let readAhead {
            // Bytes read ahead go first, in order; the budget never exceeds what is held. An
            // empty ring is given back, so that streams that stalled once do not keep one.
            n = batch.vectors[..<batch.vectorCount].reduce(0) {
                $0 + readAhead.take(into: .init(start: $1.iov_base, count: $1.iov_len))
            }
            if readAhead.isEmpty {
                connection.readAhead = nil
                state.readAheadBuffers -= 1
            }
        } else {
            // A failure the read-ahead met is reported now, after every byte before it.
            var result = -1
            var readError = connection.hostReadError
            if readError == 0 {
                repeat {
                    result = readv(fd, batch.vectors.baseAddress, Int32(batch.vectorCount))
                } while result < 0 && errno == EINTR
                if result < 0 { readError = errno }
            }
            guard result > 0 else {
                for _ in 1..<batch.packetCount { queue.undoPop() }
                noteEmptyRead(result, error: readError, fd, &connection, &state)
                return false
            }
            n = result
            connection.noteRead(n, of: planned)
        }
        // Each buffer carries what landed in it; the ones the read did not reach go back.
        var remaining = n
        var used = 0
        while used < batch.packetCount, remaining > 0 {
            let packet = batch.packets[used]
            let length = min(packet.capacity, remaining)
            var header = self.packet(.rw, for: &connection)
            header.length = UInt32(length)
            if let spot = packet.header {
                header.store(into: spot)
            } else {
                // Only the first buffer may lack a spot: its header is written across its chain.
                try first.writeBytes(header.encoded, memory: memory)
            }
            try queue.pushUsed(head: packet.head, written: UInt32(VsockHeader.size + length), memory: memory)
            remaining -= length
            used += 1
        }
        for _ in used..<batch.packetCount { queue.undoPop() }
        connection.sentToGuest &+= UInt32(n)
        readAheadIfDue(fd, &connection, &state)
        state.connections[fd] = connection
        return true
    }

    /// Adds the `iovec`s of where a receive chain's payload goes (after its header, at most
    /// `capacity` bytes) to `batch`.
    private func addVectors(
        of chain: DescriptorChain, capacity: Int, to batch: VsockReceiveBatch, memory: GuestMemory
    ) throws(VirtqueueError) {
        try chain.forEachSegment(writable: true, skipping: VsockHeader.size, limit: capacity) {
            (buffer) throws(VirtqueueError) in
            guard let bytes = try? memory.buffer(at: buffer.address, count: Int(buffer.length)) else {
                throw .bufferOutsideMemory(address: buffer.address, length: buffer.length)
            }
            batch.appendVector(bytes)
        }
    }

    /// The stream whose turn it is to fill receive buffers: among those with data for the guest,
    /// the first after the last one served in descriptor order, else the lowest (round robin).
    func nextSender(_ state: State) -> Int32? {
        var after: Int32?
        var lowest: Int32?
        for (fd, connection) in state.connections where connection.wantsToSendData {
            if fd > state.lastServed, after.map({ fd < $0 }) ?? true { after = fd }
            if lowest.map({ fd < $0 }) ?? true { lowest = fd }
        }
        return after ?? lowest
    }

    /// A read of the host socket that brought nothing: `result` is readv's (0 at the end of the
    /// stream, -1 with `error`).
    func noteEmptyRead(
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
    func readAheadIfDue(_ fd: Int32, _ connection: inout VsockConnection, _ state: inout State) {
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
}
