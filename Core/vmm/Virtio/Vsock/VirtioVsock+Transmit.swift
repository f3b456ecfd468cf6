import EventLoop
import GuestMemory
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Guest → host: the transmit queue's packets, and the host sockets they are written to.
extension VirtioVsock {
    // MARK: - Guest → host (transmit queue)

    func drainTransmit(_ queue: inout Virtqueue, memory: GuestMemory) throws(VirtqueueError) -> Bool {
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
            return state.receiveHasWork
        }
        if wake { receiveKick.raise() }
        return completed
    }

    func handle(
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
        if let fd, var connection = state.connections[fd] {
            connection.updatePeerCredit(header)
            spillReadAheadIfTooLong(of: connection, &state)
            state.connections[fd] = connection
        }
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
            if header.flags & VsockHeader.shutdownReceive != 0, let connection = state.connections[fd] {
                state.connections[fd]?.guestStoppedReceiving = true
                releaseReadAhead(of: connection, &state)
            }
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
    func resetStream(_ header: VsockHeader, _ fd: Int32?, _ state: inout State) {
        if let fd { closeAndReset(fd, &state) } else { replyReset(to: header, &state) }
    }

    /// A guest REQUEST to host port P: connect to `<socketPath>_P`, answer RESPONSE or RST.
    func connectToHost(_ header: VsockHeader, key: VsockConnectionKey, _ state: inout State) {
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
    func forwardPayload(
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
                guard let sent = sendAvailable(fd, UnsafeRawBufferPointer(bytes)) else {
                    return closeAndReset(fd, &state)
                }
                done = sent
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
    func announceCreditIfDue(_ connection: inout VsockConnection, _ state: inout State) {
        if connection.forwarded &- connection.forwardedAnnounced >= Self.bufferAllocation / 2 {
            state.control.append(packet(.creditUpdate, for: &connection))
        }
    }

    /// After a shutdown from either side: pass a guest's end of sending on to the host socket
    /// once everything before it was written; close when neither side will send any more and
    /// what the guest sent has all reached the host socket (a guest that closes right after its
    /// last write must not lose what still waits for a slow host reader).
    func finishHalfClosed(_ fd: Int32, _ state: inout State) {
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
}
