import EventLoop
import Foundation
import Testing

@testable import Virtio

#if canImport(Glibc)
    import Glibc
#endif

/// Host bytes read ahead of the guest's credit: the bookkeeping of held receive buffers, and the
/// device keeping a host socket drained while the guest's credit is spent.
@Suite("virtio-vsock read-ahead")
struct VsockReadAheadTests {
    static let guestPort: UInt32 = 1025
    static let servicePort: UInt32 = 5000
    /// Receive buffers the tests keep posted: more than read-ahead may hold (a quarter of the
    /// queue) plus what it must leave available (an eighth).
    static let posted = 200

    // MARK: - Held packets

    @Test("held packets come out in order; a spill copies them out in order and returns their buffers")
    func heldPackets() {
        let storage = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 8)
        defer { storage.deallocate() }
        for index in 0..<64 { storage.storeBytes(of: UInt8(index), toByteOffset: index, as: UInt8.self) }
        let readAhead = VsockReadAhead()
        func packet(_ head: UInt16, at offset: Int, _ length: Int) -> VsockReadAhead.Packet {
            .init(
                head: head, header: .init(start: storage, count: VsockHeader.size), payload: storage + offset,
                length: length, capacity: length + 2)
        }
        #expect(readAhead.isEmpty && readAhead.firstPacket == nil)
        readAhead.append(packet(7, at: 0, 10))
        readAhead.append(packet(9, at: 10, 30))
        readAhead.append(packet(3, at: 40, 5))
        #expect(readAhead.count == 45 && readAhead.packetCount == 3 && readAhead.longestPacket == 30)
        #expect(readAhead.firstPacket?.head == 7)
        readAhead.removeFirstPacket()
        #expect(readAhead.firstPacket?.head == 9 && readAhead.count == 35)

        // The newest packet's room is 2 bytes, bounded by the length a packet may reach.
        #expect(readAhead.lastRoom(maxLength: 100).count == 2)
        #expect(readAhead.lastRoom(maxLength: 6).count == 1)
        #expect(readAhead.lastRoom(maxLength: 4).count == 0)
        readAhead.extendLast(by: 2)
        #expect(readAhead.count == 37 && readAhead.lastRoom(maxLength: 100).count == 0)

        #expect(readAhead.spill() == [9, 3])
        #expect(readAhead.packetCount == 0 && readAhead.firstPacket == nil, "spilled bytes go before any packet")
        #expect(readAhead.count == 37 && readAhead.spilledCount == 37 && readAhead.longestPacket == 0)
        readAhead.append(packet(4, at: 0, 2))
        #expect(readAhead.firstPacket == nil, "a packet waits behind spilled bytes")
        #expect(readAhead.lastRoom(maxLength: 100).count == 0, "nothing is added to a packet behind spilled bytes")
        var out = [UInt8](repeating: 0, count: 20)
        #expect(out.withUnsafeMutableBytes { readAhead.takeSpilled(into: $0) } == 20)
        #expect(out == Array(10..<30))
        #expect(out.withUnsafeMutableBytes { readAhead.takeSpilled(into: $0) } == 17)
        #expect(Array(out.prefix(17)) == Array(30..<47))
        #expect(readAhead.spilledCount == 0 && readAhead.firstPacket?.head == 4 && readAhead.count == 2)
        #expect(readAhead.removeAll() == [4])
        #expect(readAhead.isEmpty)
    }

    // MARK: - The device

    /// A guest stream to a host service, and the service's socket.
    static func openStream(
        bufferAllocation: UInt32 = VsockHarness.guestBufferAllocation, layout: ReceiveLayout = .joined,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> (VsockHarness, Int32)? {
        let harness = try VsockHarness()
        harness.layout = layout
        harness.postedTarget = posted
        let listener = try harness.listen(port: servicePort)
        guard
            let host = try harness.openGuestStream(
                guestPort: guestPort, hostPort: servicePort, listener: listener, bufferAllocation: bufferAllocation,
                sourceLocation: sourceLocation)
        else { return nil }
        return (harness, host)
    }

    /// Gives the host socket `fd` a small send buffer, so that what its writer gets ahead comes
    /// from the device, not from the socket.
    static func shrinkSendBuffer(_ fd: Int32) {
        UnixSocket.setSendBuffer(fd, to: 8 << 10)
    }

    /// Bytes read ahead, the most any one stream holds.
    static func mostHeld(_ harness: VsockHarness) -> Int {
        harness.device.state.withLock { $0.connections.values.map(\.readAheadCount).max() ?? 0 }
    }

    /// Writes `data` into `host` without waiting, serving the guest's receive queue (which takes
    /// no credit back) until the writes stop making progress for 0.3 s; returns how much the
    /// socket took.
    static func writeWhileStalled(_ harness: VsockHarness, _ host: Int32, _ data: [UInt8]) throws -> Int {
        var written = 0
        var idleRounds = 0
        while written < data.count && idleRounds < 150 {
            let n = Host.writeSome(host, Array(data[written..<min(data.count, written + (64 << 10))]))
            written += n
            try harness.pump()
            idleRounds = n == 0 ? idleRounds + 1 : 0
            usleep(2_000)
        }
        return written
    }

    /// Writes `bytes` into `fd` on a thread of its own (for up to 10 s); the semaphore is
    /// signalled once it is done.
    static func writeInBackground(_ fd: Int32, _ bytes: [UInt8]) -> DispatchSemaphore {
        let finished = DispatchSemaphore(value: 0)
        Thread {
            _ = Host.write(fd, bytes, timeout: 10)
            finished.signal()
        }.start()
        return finished
    }

    /// Reads the stream as the guest, acknowledging what it took, until a packet other than RW
    /// ends it; returns the bytes and that packet's op (nil if none came within 5 s).
    static func readToEnd(_ harness: VsockHarness) throws -> (bytes: [UInt8], end: VsockHeader.Op?) {
        var received: [UInt8] = []
        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline {
            try harness.pump()
            let packets = harness.inbox
            harness.inbox.removeAll()
            for (index, packet) in packets.enumerated() where packet.op != .rw {
                #expect(index == packets.count - 1, "data after the stream's end")
                return (received + packets[..<index].flatMap(\.payload), packet.op)
            }
            received += packets.flatMap(\.payload)
            try harness.send(
                .creditUpdate, guestPort: guestPort, hostPort: servicePort, forwardCount: UInt32(received.count))
            usleep(1_000)
        }
        return (received, nil)
    }

    /// Receive buffers held with bytes read ahead.
    static func heldBuffers(_ harness: VsockHarness) -> Int {
        harness.device.state.withLock { $0.heldBuffers }
    }

    @Test(
        "a host writer is not held back by a guest whose credit is spent: the device reads ahead into receive buffers, within its bound",
        arguments: [ReceiveLayout.joined, .split])
    func drainsWhileCreditIsSpent(layout: ReceiveLayout) throws {
        guard case (let harness, let host)? = try Self.openStream(layout: layout) else { return }
        Self.shrinkSendBuffer(host)
        let data = pattern(1 << 20, seed: 3)
        let written = try Self.writeWhileStalled(harness, host, data)
        let credit = Int(VsockHarness.guestBufferAllocation)
        #expect(written >= credit + 63 * VsockHarness.receivePayload, "the writer got only \(written) bytes out")
        #expect(written < data.count, "the device read more than its credit and read-ahead bound allow")
        // Two descriptors a buffer fit 128 in the queue: fewer than half of them, 63, are held.
        let posted = layout == .joined ? Self.posted : Int(VsockHarness.queueSize) / 2
        let held = min(VirtioVsock.readAheadBytes / VsockHarness.receivePayload, posted / 2 - 1)
        #expect(Self.heldBuffers(harness) == held)
        #expect(Self.mostHeld(harness) == held * VsockHarness.receivePayload)
        #expect(harness.device.statusJSON().contains(#""read_ahead":\#(held * VsockHarness.receivePayload)"#))

        // The guest reads on, acknowledging what it took: every byte arrives once, in order,
        // and never beyond its credit.
        var received = try harness.receiveData(
            count: credit, guestPort: Self.guestPort, hostPort: Self.servicePort, timeout: 1)
        #expect(received.count == credit, "only the guest's credit may be in flight")
        let finished = Self.writeInBackground(host, Array(data[written...]))
        defer { finished.wait() }  // the socket outlives the writer
        try harness.send(
            .creditUpdate, guestPort: Self.guestPort, hostPort: Self.servicePort, forwardCount: UInt32(credit))
        received += try harness.receiveData(
            count: data.count - received.count, guestPort: Self.guestPort, hostPort: Self.servicePort, timeout: 10,
            creditUpdates: true, consumedBefore: UInt32(credit))
        #expect(received.count == data.count)
        let same = received == data
        #expect(same, "the bytes differ from what the host wrote")
    }

    @Test(
        "a host that writes and closes while the guest's credit is spent: every byte reaches the guest before the SHUTDOWN"
    )
    func endOfStreamAfterReadAhead() throws {
        guard case (let harness, let host)? = try Self.openStream() else { return }
        Self.shrinkSendBuffer(host)
        let data = pattern(200 << 10, seed: 5)
        let written = try Self.writeWhileStalled(harness, host, data)
        #expect(written == data.count, "200 KiB fit in the guest's credit and the read-ahead")
        #expect(Self.mostHeld(harness) > 0, "nothing was read ahead")
        shutdown(host, Int32(SHUT_WR))
        let (received, end) = try Self.readToEnd(harness)
        #expect(end == .shutdown)
        #expect(received.count == data.count, "the SHUTDOWN overtook bytes read ahead")
        let same = received == data
        #expect(same, "the bytes differ from what the host wrote")
    }

    @Test("a host socket that fails while bytes wait in the read-ahead: the guest gets them all, then RST")
    func failureAfterReadAhead() throws {
        guard case (let harness, let host)? = try Self.openStream() else { return }
        Self.shrinkSendBuffer(host)
        // Bytes from the guest that the host never reads: closing then fails the device's end
        // of the socket (ECONNRESET) instead of ending it cleanly.
        try harness.send(.rw, guestPort: Self.guestPort, hostPort: Self.servicePort, payload: Array("unread".utf8))
        let data = pattern(200 << 10, seed: 7)
        let written = try Self.writeWhileStalled(harness, host, data)
        #expect(written == data.count)
        #expect(Self.mostHeld(harness) > 0, "nothing was read ahead")
        harness.closeHost(host)
        // The device takes the failure into the read-ahead's keeping before the guest reads on.
        #expect(
            eventually {
                try? harness.pump()
                return harness.device.state.withLock { $0.connections.values.contains { $0.hostReadError != 0 } }
            })
        let (received, end) = try Self.readToEnd(harness)
        #expect(end == .reset, "a failed host socket must end the stream with RST")
        #expect(received.count == data.count, "the RST overtook bytes read ahead")
        let same = received == data
        #expect(same, "the bytes differ from what the host wrote")
        #expect(harness.device.connectionCount == 0)
    }

    @Test("receive buffers held for a stream go back to the guest, empty, when the stream ends or stops receiving")
    func buffersReturned() throws {
        let held = VirtioVsock.readAheadBytes / VsockHarness.receivePayload
        guard case (let harness, let host)? = try Self.openStream() else { return }
        Self.shrinkSendBuffer(host)
        _ = try Self.writeWhileStalled(harness, host, pattern(512 << 10))
        #expect(Self.heldBuffers(harness) == held)
        try harness.send(.reset, guestPort: Self.guestPort, hostPort: Self.servicePort)
        #expect(Self.heldBuffers(harness) == 0)
        #expect(harness.device.connectionCount == 0)
        _ = try harness.drain(for: 0.05)
        #expect(harness.returnedEmpty == held)

        guard case (let again, let second)? = try Self.openStream() else { return }
        Self.shrinkSendBuffer(second)
        _ = try Self.writeWhileStalled(again, second, pattern(512 << 10))
        #expect(Self.heldBuffers(again) == held)
        again.inbox.removeAll()
        try again.send(
            .shutdown, guestPort: Self.guestPort, hostPort: Self.servicePort, flags: VsockHeader.shutdownReceive)
        #expect(Self.heldBuffers(again) == 0)
        let after = try again.drain(for: 0.05)
        #expect(again.returnedEmpty == held)
        #expect(!after.contains { $0.op == .rw }, "data after the guest stopped receiving")
        #expect(again.device.connectionCount == 1, "the guest may still send")
    }

    @Test("a stream whose guest reader stalls holds too few buffers to stop Linux refilling the queue for the others")
    func stalledReaderLeavesBuffersForOthers() throws {
        let harness = try VsockHarness()
        let listener = try harness.listen(port: Self.servicePort, backlog: 2)
        // As Linux 6.1 posts: 44 + 4096-byte chains, as many as the queue holds (128), topped up
        // only once fewer than half are outstanding.
        harness.layout = .split
        harness.postedTarget = Int(VsockHarness.queueSize) / 2
        harness.refillsBelowHalf = true
        guard
            let stalled = try harness.openGuestStream(
                guestPort: Self.guestPort, hostPort: Self.servicePort, listener: listener),
            let other = try harness.openGuestStream(
                guestPort: Self.guestPort + 1, hostPort: Self.servicePort, listener: listener)
        else { return }
        Self.shrinkSendBuffer(stalled)
        // The first stream's guest never reads: the device holds all it may for it.
        _ = try Self.writeWhileStalled(harness, stalled, pattern(1 << 20))
        // (Fewer than half of the most it saw outstanding: the requests' replies took two.)
        #expect((32..<(harness.postedTarget / 2)).contains(Self.heldBuffers(harness)))
        // The second stream's bytes still all arrive.
        let data = pattern(512 << 10, seed: 17)
        let finished = Self.writeInBackground(other, data)
        defer { finished.wait() }  // the socket outlives the writer
        let received = try harness.receiveData(
            count: data.count, guestPort: Self.guestPort + 1, hostPort: Self.servicePort, timeout: 10,
            creditUpdates: true)
        #expect(received.count == data.count, "the other stream got \(received.count) of \(data.count) bytes")
        let same = received == data
        #expect(same, "the bytes differ from what the host wrote")
    }

    @Test("a guest that shrinks its buffer below the packets held gets their bytes in smaller packets, in order")
    func spilledWhenTheGuestShrinksItsBuffer() throws {
        guard case (let harness, let host)? = try Self.openStream() else { return }
        Self.shrinkSendBuffer(host)
        let data = pattern(200 << 10, seed: 11)
        #expect(try Self.writeWhileStalled(harness, host, data) == data.count)
        let credit = Int(VsockHarness.guestBufferAllocation)
        var received = try harness.receiveData(
            count: credit, guestPort: Self.guestPort, hostPort: Self.servicePort, timeout: 1)
        #expect(received.count == credit)
        // Everything past the credit is read ahead (the last writes may still be in the socket).
        #expect(
            eventually {
                try? harness.pump()
                return Self.mostHeld(harness) == data.count - credit
            })
        let held = Self.heldBuffers(harness)
        #expect(held > 0, "nothing was read ahead")
        // The guest takes what arrived but now offers 1000 bytes: no 4 KiB packet held fits.
        let small: UInt32 = 1000
        try harness.send(
            .creditUpdate, guestPort: Self.guestPort, hostPort: Self.servicePort, bufferAllocation: small,
            forwardCount: UInt32(credit))
        #expect(Self.heldBuffers(harness) == 0)
        #expect(Self.mostHeld(harness) == data.count - credit, "spilled bytes are still held")
        received += try harness.receiveData(
            count: data.count - credit, guestPort: Self.guestPort, hostPort: Self.servicePort, timeout: 10,
            creditUpdates: true, bufferAllocation: small, consumedBefore: UInt32(credit))
        #expect(harness.returnedEmpty == held)
        #expect(received.count == data.count)
        let same = received == data
        #expect(same, "the bytes differ from what the host wrote")
    }

    @Test("streams together hold at most a quarter of the receive queue, leaving an eighth of it available")
    func heldBufferLimit() throws {
        let harness = try VsockHarness()
        let streams = 40
        let listener = try harness.listen(port: Self.servicePort, backlog: Int32(streams))
        harness.postedTarget = Self.posted
        var hosts: [Int32] = []
        for index in 0..<streams {
            // 100 bytes of credit each: the next 200 bytes of each stream are read ahead, as two
            // packets no larger than the guest's buffer, if they may be.
            guard
                let host = try harness.openGuestStream(
                    guestPort: Self.guestPort + UInt32(index), hostPort: Self.servicePort, listener: listener,
                    bufferAllocation: 100)
            else { return }
            hosts.append(host)
        }
        let data = pattern(300, seed: 13)
        for host in hosts { #expect(Host.write(host, data)) }
        let maxHeld = Int(VsockHarness.queueSize) / 4
        #expect(
            eventually {
                try? harness.pump()
                return Self.heldBuffers(harness) == maxHeld
            })
        let early = try harness.drain(for: 0.3)
        #expect(Self.heldBuffers(harness) == maxHeld)
        let longest = harness.device.state.withLock { state in
            state.connections.values.map { $0.readAhead?.longestPacket ?? 0 }.max() ?? 0
        }
        #expect(longest == 100, "a packet held is larger than the guest's buffer")

        // With the guest offering only 40 more buffers, nothing more is held: an eighth of the
        // queue (32) stays available for other packets.
        let more = try VsockHarness()
        let moreListener = try more.listen(port: Self.servicePort)
        more.postedTarget = 40
        guard
            let single = try more.openGuestStream(
                guestPort: Self.guestPort, hostPort: Self.servicePort, listener: moreListener, bufferAllocation: 100)
        else { return }
        #expect(Host.write(single, pattern(100 << 10)))
        _ = try more.drain(for: 0.2)
        #expect((1...(40 - Int(VsockHarness.queueSize) / 8)).contains(Self.heldBuffers(more)))

        // Every stream's bytes arrive whole and in order once the guest reads on.
        for index in 0..<streams {
            let port = Self.guestPort + UInt32(index)
            let first = early.filter { $0.op == .rw && $0.header.destinationPort == port }.flatMap(\.payload)
            try harness.send(
                .creditUpdate, guestPort: port, hostPort: Self.servicePort, bufferAllocation: 100,
                forwardCount: UInt32(first.count))
            let rest = try harness.receiveData(
                count: data.count - first.count, guestPort: port, hostPort: Self.servicePort, timeout: 5,
                creditUpdates: true, bufferAllocation: 100, consumedBefore: UInt32(first.count))
            #expect(first + rest == data, "stream \(index) got \(first.count + rest.count) bytes")
        }
        #expect(Self.heldBuffers(harness) == 0)
    }
}
