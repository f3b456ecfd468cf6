import EventLoop
import GuestMemory
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Host → guest: the receive queue filled from host sockets, and the buffers read ahead into.
extension VirtioVsock {
    // MARK: - Host → guest (receive queue)

    func fillReceive(_ queue: inout Virtqueue, memory: GuestMemory) throws(VirtqueueError) -> Bool {
        try state.withLock { (state: inout State) throws(VirtqueueError) -> Bool in
            var completed = false
            // Buffers that streams which ended (or spilled) held go back empty: Linux drops a
            // used buffer shorter than a header and posts a new one.
            while let head = state.returnedBuffers.popLast() {
                try queue.pushUsed(head: head, written: 0, memory: memory)
                completed = true
            }
            // Packets read ahead that the guest's credit now covers go first: they need no new
            // buffer, and giving them back is what lets the guest post more. (Credit changes only
            // with transmit packets, so once is enough.)
            if state.heldBuffers > 0 {
                for fd in state.connections.compactMap({ $0.value.readAheadIsDeliverable ? $0.key : nil }) {
                    try deliverReadAhead(fd, &queue, memory: memory, &state)
                    completed = true
                }
            }
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
            try readAhead(&queue, memory: memory, &state)
            return completed
        }
    }

    /// Gives one connection's host bytes to the guest: bytes spilled from the read-ahead first,
    /// else the host socket read straight into receive buffers after their headers. `first` and
    /// as many more buffers as the guest's credit and ``maxBatchBytes`` allow are filled with one
    /// copy or one readv; each buffer used becomes one packet. Returns false when the socket had
    /// no data (its connection is then marked idle); `first` is then the caller's to give back.
    func sendData(
        first: DescriptorChain, room: Int, queue: inout Virtqueue, memory: GuestMemory, _ state: inout State
    ) throws(VirtqueueError) -> Bool {
        guard let fd = nextSender(state), var connection = state.connections[fd], connection.key != nil,
            connection.readAhead?.firstPacket == nil  // held packets go first, without a new buffer
        else { return false }
        state.lastServed = fd
        let spilled = connection.readAhead.flatMap { $0.spilledCount > 0 ? $0 : nil }
        let budget = min(Int(connection.peerCredit), Self.maxBatchBytes, spilled?.spilledCount ?? Int.max)

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
        if let spilled {
            // Spilled bytes go first, in order; the budget never exceeds what is held.
            n = batch.vectors[..<batch.vectorCount].reduce(0) {
                $0 + spilled.takeSpilled(into: .init(start: $1.iov_base, count: $1.iov_len))
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
        state.connections[fd] = connection
        return true
    }

    /// Gives the guest the packets `fd`'s stream read ahead, oldest first, as far as its credit
    /// allows: their bytes are in place, so each needs only its header.
    func deliverReadAhead(_ fd: Int32, _ queue: inout Virtqueue, memory: GuestMemory, _ state: inout State)
        throws(VirtqueueError)
    {
        guard var connection = state.connections[fd], let readAhead = connection.readAhead else { return }
        state.lastServed = fd
        defer { state.connections[fd] = connection }
        while let held = readAhead.firstPacket, held.length <= connection.peerCredit {
            var header = packet(.rw, for: &connection)
            header.length = UInt32(held.length)
            header.store(into: held.header)
            readAhead.removeFirstPacket()
            state.heldBuffers -= 1
            connection.sentToGuest &+= UInt32(held.length)
            try queue.pushUsed(head: held.head, written: UInt32(VsockHeader.size + held.length), memory: memory)
        }
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

    /// Reads ahead for the streams whose guest credit is spent: their host bytes go into receive
    /// buffers the device keeps (see ``VsockReadAhead``) until credit returns. Bounded per stream
    /// by ``readAheadBytes``, and in all to a quarter of the queue, with an eighth of it left
    /// available: the guest needs buffers for other streams' packets meanwhile. Linux fills the
    /// whole queue with buffers (128 with 6.1's two descriptors each, 256 from 6.2 on) and
    /// refills it once fewer than half are outstanding, held ones included: so the device holds
    /// fewer than half of the most it has seen outstanding, or a stream whose reader stalls could
    /// keep the guest from ever posting buffers for the others.
    func readAhead(_ queue: inout Virtqueue, memory: GuestMemory, _ state: inout State) throws(VirtqueueError) {
        var available = queue.availableCount(memory: memory)
        state.mostOutstanding = max(state.mostOutstanding, available + state.heldBuffers)
        guard state.connections.values.contains(where: { $0.wantsToReadAhead }) else { return }
        // Under half of what the guest posts, so that its refill (below half) always comes.
        let maxHeld = min(Int(queue.size) / 4, state.mostOutstanding / 2 - 1)
        let reserve = Int(queue.size) / 8
        for fd in state.connections.keys.sorted() {
            guard var connection = state.connections[fd], connection.wantsToReadAhead else { continue }
            try readAhead(
                fd, &connection, maxHeld: maxHeld, available: &available, reserve: reserve, &queue, memory: memory,
                &state)
            state.connections[fd] = connection
        }
    }

    /// One stream's read-ahead: the newest held packet's free room, then as many receive
    /// buffers as its bound allows, filled by one readv. `available` counts the buffers the
    /// guest has made available, less those taken here.
    private func readAhead(
        _ fd: Int32, _ connection: inout VsockConnection, maxHeld: Int, available: inout Int, reserve: Int,
        _ queue: inout Virtqueue, memory: GuestMemory, _ state: inout State
    ) throws(VirtqueueError) {
        let readAhead = connection.readAhead ?? VsockReadAhead()
        connection.readAhead = readAhead
        // Only a packet bounded by the guest's buffer can ever fit its credit.
        let maxLength = min(Self.maxPacketPayload, Int(connection.peerBufferAllocation))
        let budget = Self.readAheadBytes - readAhead.count
        let batch = receiveBatch
        batch.removeAll()
        let tail = UnsafeMutableRawBufferPointer(rebasing: readAhead.lastRoom(maxLength: maxLength).prefix(budget))
        if tail.count > 0 { batch.appendVector(tail) }
        var planned = tail.count
        while planned < budget, !batch.isFull, state.heldBuffers + batch.packetCount < maxHeld,
            available - batch.packetCount > reserve, let chain = try queue.popChain(memory: memory)
        {
            guard let spots = readAheadSpots(in: chain, memory: memory),
                case let capacity = min(spots.payload.count, maxLength, budget - planned), capacity > 0
            else {
                queue.undoPop()
                break
            }
            batch.append(.init(head: chain.head, capacity: capacity, header: spots.header))
            batch.appendVector(.init(start: spots.payload.baseAddress, count: capacity))
            planned += capacity
        }
        guard planned > 0 else { return }
        var n: Int
        repeat { n = readv(fd, batch.vectors.baseAddress, Int32(batch.vectorCount)) } while n < 0 && errno == EINTR
        if n <= 0 {
            // Nothing now; the end of the stream, or a failure (which the kernel reports only
            // once, so it is kept), is left for the ordinary read once the bytes held are sent.
            if n == 0 {
                connection.hostEndReadAhead = true
            } else if errno == EAGAIN || errno == EWOULDBLOCK {
                connection.hostReadable = false
            } else {
                connection.hostReadError = errno
            }
            for _ in 0..<batch.packetCount { queue.undoPop() }
            return
        }
        connection.noteRead(n, of: planned)
        let extended = min(n, tail.count)
        if extended > 0 { readAhead.extendLast(by: extended) }
        var remaining = n - extended
        var used = 0
        while used < batch.packetCount, remaining > 0 {
            let packet = batch.packets[used]
            let vector = batch.vectors[used + (tail.count > 0 ? 1 : 0)]
            guard let header = packet.header, let payload = vector.iov_base else { break }
            let length = min(packet.capacity, remaining)
            readAhead.append(
                .init(head: packet.head, header: header, payload: payload, length: length, capacity: packet.capacity))
            state.heldBuffers += 1
            remaining -= length
            used += 1
        }
        for _ in used..<batch.packetCount { queue.undoPop() }
        available -= used
    }

    /// Where a read-ahead packet goes in a receive chain: its header in place, and its payload
    /// in one piece (the rest of the header's buffer, else the next writable buffer), as Linux
    /// lays receive buffers out. Nil for other layouts, which are filled only with credit.
    func readAheadSpots(in chain: DescriptorChain, memory: GuestMemory)
        -> (header: UnsafeMutableRawBufferPointer, payload: UnsafeMutableRawBufferPointer)?
    {
        var headerBuffer: DescriptorChain.Buffer?
        for index in 0..<chain.buffers.count {
            let buffer = chain.buffers[index]
            guard buffer.isWritable else { continue }
            guard let first = headerBuffer else {
                guard buffer.length >= VsockHeader.size else { return nil }
                headerBuffer = buffer
                if buffer.length > VsockHeader.size {
                    guard let whole = try? memory.buffer(at: buffer.address, count: Int(buffer.length)) else {
                        return nil
                    }
                    return (.init(rebasing: whole[..<VsockHeader.size]), .init(rebasing: whole[VsockHeader.size...]))
                }
                continue
            }
            guard buffer.length > 0,
                let header = try? memory.buffer(at: first.address, count: VsockHeader.size),
                let payload = try? memory.buffer(at: buffer.address, count: Int(buffer.length))
            else { return nil }
            return (header, payload)
        }
        return nil
    }
}
