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
    static func openStream(sourceLocation: SourceLocation = #_sourceLocation) throws -> (VsockHarness, Int32)? {
        let harness = try VsockHarness()
        let listener = try harness.listen(port: servicePort)
        guard
            let host = try harness.openGuestStream(
                guestPort: guestPort, hostPort: servicePort, listener: listener, sourceLocation: sourceLocation)
        else { return nil }
        return (harness, host)
    }

    /// Writes `data` into `host` without waiting, serving the guest's receive queue (which takes
    /// no credit back) until the writes stop making progress; returns how much the socket took.
    static func writeWhileStalled(_ harness: VsockHarness, _ host: Int32, _ data: [UInt8]) throws -> Int {
        var written = 0
        var idleRounds = 0
        while written < data.count && idleRounds < 50 {
            let n = Host.writeSome(host, Array(data[written..<min(data.count, written + (64 << 10))]))
            written += n
            try harness.pump()
            idleRounds = n == 0 ? idleRounds + 1 : 0
            usleep(2_000)
        }
        return written
    }

    @Test("a host writer is not held back by a guest whose credit is spent: the device reads ahead, within its bound")
    func drainsWhileCreditIsSpent() throws {
        guard case (let harness, let host)? = try Self.openStream() else { return }
        // A small send buffer on the writer, so that what it gets ahead comes from the device.
        var small: Int32 = 8 << 10
        setsockopt(host, SOL_SOCKET, SO_SNDBUF, &small, socklen_t(MemoryLayout<Int32>.size))
        let data = pattern(1 << 20, seed: 3)
        let written = try Self.writeWhileStalled(harness, host, data)
        let credit = Int(VsockHarness.guestBufferAllocation)
        #expect(written >= credit + VirtioVsock.readAheadBytes, "the writer got only \(written) bytes out")
        #expect(written < data.count, "the device read more than its credit and read-ahead bound allow")
        let held = harness.device.state.withLock { $0.connections.values.map(\.readAheadCount).max() ?? 0 }
        #expect(held == VirtioVsock.readAheadBytes)
        #expect(harness.device.statusJSON().contains(#""read_ahead":\#(VirtioVsock.readAheadBytes)"#))

        // The guest reads on, acknowledging what it took: every byte arrives once, in order,
        // and never beyond its credit.
        var received = try harness.receiveData(
            count: credit, guestPort: Self.guestPort, hostPort: Self.servicePort, timeout: 1)
        #expect(received.count == credit, "only the guest's credit may be in flight")
        let writer = Thread { _ = Host.write(host, Array(data[written...]), timeout: 10) }
        writer.start()
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
        let data = pattern(200 << 10, seed: 5)
        let written = try Self.writeWhileStalled(harness, host, data)
        #expect(written == data.count, "200 KiB fit in the guest's credit and the read-ahead")
        shutdown(host, Int32(SHUT_WR))
        var received: [UInt8] = []
        var consumed: UInt32 = 0
        var ended = false
        let deadline = Date().addingTimeInterval(5)
        while !ended && Date() < deadline {
            try harness.pump()
            for packet in harness.inbox {
                if packet.op == .rw {
                    #expect(!ended, "data after the SHUTDOWN")
                    received += packet.payload
                    consumed &+= UInt32(packet.payload.count)
                } else {
                    #expect(packet.op == .shutdown, "unexpected \(packet.header)")
                    ended = packet.op == .shutdown
                    #expect(received.count == data.count, "the SHUTDOWN overtook bytes read ahead")
                }
            }
            harness.inbox.removeAll()
            try harness.send(
                .creditUpdate, guestPort: Self.guestPort, hostPort: Self.servicePort, forwardCount: consumed)
            usleep(1_000)
        }
        #expect(ended)
        let same = received == data
        #expect(same, "the bytes differ from what the host wrote")
    }

    @Test("a stream's read-ahead buffer is given back when the stream ends")
    func bufferReleased() throws {
        guard case (let harness, let host)? = try Self.openStream() else { return }
        _ = try Self.writeWhileStalled(harness, host, pattern(512 << 10))
        #expect(harness.device.state.withLock { $0.readAheadBuffers } == 1)
        try harness.send(.reset, guestPort: Self.guestPort, hostPort: Self.servicePort)
        #expect(harness.device.state.withLock { $0.readAheadBuffers } == 0)
        #expect(harness.device.connectionCount == 0)
    }
}
