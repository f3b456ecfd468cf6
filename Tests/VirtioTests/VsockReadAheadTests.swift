import EventLoop
import Foundation
import Testing

@testable import Virtio

#if canImport(Glibc)
    import Glibc
#endif

/// Host bytes read ahead of the guest's credit: the ring itself on a real socket pair, and the
/// device keeping a host socket drained while the guest's credit is spent.
@Suite("virtio-vsock read-ahead")
struct VsockReadAheadTests {
    static let guestPort: UInt32 = 1025
    static let servicePort: UInt32 = 5000

    /// A connected pair of non-blocking Unix stream sockets.
    static func socketPair() throws -> (Int32, Int32) {
        var fds: [Int32] = [-1, -1]
        let flags = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        guard socketpair(AF_UNIX, flags, 0, &fds) == 0 else {
            throw EventLoopError.system("socketpair", errno: errno)
        }
        return (fds[0], fds[1])
    }

    // MARK: - The ring

    @Test("the ring keeps bytes in order across its wrap, and reports end of stream and no data")
    func ring() throws {
        let (reader, writer) = try Self.socketPair()
        defer {
            close(reader)
            close(writer)
        }
        let ring = VsockReadAhead(capacity: 10)
        #expect(ring.read(from: reader) == -1 && errno == EAGAIN, "an empty socket reads as EAGAIN")
        #expect(Host.write(writer, Array(0..<7)))
        #expect(ring.read(from: reader) == 7)
        var out = [UInt8](repeating: 0, count: 5)
        #expect(out.withUnsafeMutableBytes { ring.take(into: $0) } == 5)
        #expect(out == [0, 1, 2, 3, 4])
        // 2 held at offsets 5 and 6; 8 more fill 7...9 and wrap to 0...4.
        #expect(Host.write(writer, Array(7..<20)))
        #expect(ring.read(from: reader) == 8, "only the room is read")
        #expect(ring.room == 0)
        out = [UInt8](repeating: 0, count: 16)
        #expect(out.withUnsafeMutableBytes { ring.take(into: $0) } == 10)
        #expect(Array(out.prefix(10)) == Array(5..<15))
        #expect(ring.isEmpty)
        #expect(ring.read(from: reader) == 5)
        out = [UInt8](repeating: 0, count: 5)
        #expect(out.withUnsafeMutableBytes { ring.take(into: $0) } == 5)
        #expect(out == Array(15..<20))
        shutdown(writer, Int32(SHUT_WR))
        #expect(ring.read(from: reader) == 0, "the end of the stream reads as 0")
    }

    // MARK: - The device

    /// A guest stream to a host service, and the service's socket.
    static func openStream(
        bufferAllocation: UInt32 = VsockHarness.guestBufferAllocation, sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> (VsockHarness, Int32)? {
        let harness = try VsockHarness()
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

    /// Bytes held in read-ahead buffers, the most any one stream holds.
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

    @Test("a host writer is not held back by a guest whose credit is spent: the device reads ahead, within its bound")
    func drainsWhileCreditIsSpent() throws {
        guard case (let harness, let host)? = try Self.openStream() else { return }
        Self.shrinkSendBuffer(host)
        let data = pattern(1 << 20, seed: 3)
        let written = try Self.writeWhileStalled(harness, host, data)
        let credit = Int(VsockHarness.guestBufferAllocation)
        #expect(written >= credit + VirtioVsock.readAheadBytes, "the writer got only \(written) bytes out")
        #expect(written < data.count, "the device read more than its credit and read-ahead bound allow")
        #expect(Self.mostHeld(harness) == VirtioVsock.readAheadBytes)
        #expect(harness.device.statusJSON().contains(#""read_ahead":\#(VirtioVsock.readAheadBytes)"#))

        // The guest reads on, acknowledging what it took: every byte arrives once, in order,
        // and never beyond its credit.
        var received = try harness.receiveData(
            count: credit, guestPort: Self.guestPort, hostPort: Self.servicePort, timeout: 1)
        #expect(received.count == credit, "only the guest's credit may be in flight")
        let finished = DispatchSemaphore(value: 0)
        let writer = Thread {
            _ = Host.write(host, Array(data[written...]), timeout: 10)
            finished.signal()
        }
        writer.start()
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
            eventually { harness.device.state.withLock { $0.connections.values.contains { $0.hostReadError != 0 } } })
        let (received, end) = try Self.readToEnd(harness)
        #expect(end == .reset, "a failed host socket must end the stream with RST")
        #expect(received.count == data.count, "the RST overtook bytes read ahead")
        let same = received == data
        #expect(same, "the bytes differ from what the host wrote")
        #expect(harness.device.connectionCount == 0)
    }

    @Test("a stream's read-ahead buffer is given back when the stream ends, the device resets, or it empties")
    func bufferReleased() throws {
        guard case (let harness, let host)? = try Self.openStream() else { return }
        Self.shrinkSendBuffer(host)
        _ = try Self.writeWhileStalled(harness, host, pattern(512 << 10))
        #expect(harness.device.state.withLock { $0.readAheadBuffers } == 1)
        try harness.send(.reset, guestPort: Self.guestPort, hostPort: Self.servicePort)
        #expect(harness.device.state.withLock { $0.readAheadBuffers } == 0)
        #expect(harness.device.connectionCount == 0)

        guard case (let again, let second)? = try Self.openStream() else { return }
        _ = try Self.writeWhileStalled(again, second, pattern(100 << 10))
        #expect(again.device.state.withLock { $0.readAheadBuffers } == 1)
        again.device.reset()
        #expect(again.device.state.withLock { $0.readAheadBuffers } == 0)

        guard case (let third, let writer)? = try Self.openStream() else { return }
        let data = pattern(100 << 10, seed: 2)
        #expect(try Self.writeWhileStalled(third, writer, data) == data.count)
        let received = try third.receiveData(
            count: data.count, guestPort: Self.guestPort, hostPort: Self.servicePort, creditUpdates: true)
        #expect(received == data)
        #expect(third.device.state.withLock { $0.readAheadBuffers } == 0, "an empty read-ahead buffer is kept")
    }

    @Test("at most maxReadAheadBuffers streams read ahead; the others wait for credit as before")
    func bufferLimit() throws {
        let harness = try VsockHarness()
        let streams = VirtioVsock.maxReadAheadBuffers + 1
        let listener = try harness.listen(port: Self.servicePort, backlog: Int32(streams))
        harness.postedTarget = 128
        var hosts: [Int32] = []
        for index in 0..<streams {
            // 100 bytes of credit each: the 101st byte of each stream is read ahead, if it may be.
            guard
                let host = try harness.openGuestStream(
                    guestPort: Self.guestPort + UInt32(index), hostPort: Self.servicePort, listener: listener,
                    bufferAllocation: 100)
            else { return }
            hosts.append(host)
        }
        for host in hosts { #expect(Host.write(host, pattern(300))) }
        #expect(
            eventually {
                try? harness.pump()
                return harness.device.state.withLock { $0.readAheadBuffers } == VirtioVsock.maxReadAheadBuffers
            })
        _ = try harness.drain(for: 0.3)
        let holding = harness.device.state.withLock { state in
            state.connections.values.filter { $0.readAhead != nil }.count
        }
        #expect(holding == VirtioVsock.maxReadAheadBuffers)
        #expect(harness.device.state.withLock { $0.readAheadBuffers } == VirtioVsock.maxReadAheadBuffers)
    }
}
