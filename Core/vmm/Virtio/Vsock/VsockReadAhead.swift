/// Host bytes read before the guest had credit for them, kept in the receive buffers they will
/// reach the guest in: buffers the device has taken from the receive queue, filled, and not yet
/// returned. Once credit comes back a buffer goes to the guest with its header written, and
/// the bytes are not copied again.
///
/// Why read ahead at all: a Unix stream socket's writer sleeps until less than a quarter of its
/// send buffer is queued, so a client with the default buffer (about 208 KiB) wakes only once
/// the device has read nearly all of it. Without a place to put those bytes, the device stops
/// reading when the guest's credit runs out, the writer stays asleep, and every credit round
/// trip ends with an empty socket while the writer wakes up. Reading ahead keeps the socket
/// drained, so the writer refills it while the guest catches up; vhost-vsock gets the same from
/// the guest's credit window sitting in the kernel's own send queue.
///
/// Should the guest shrink its buffer below a packet already filled, the bytes are copied out
/// (``spill()``) and the buffers returned empty: a packet larger than the guest's buffer would
/// never fit its credit.
///
/// Not thread-safe: a connection's read-ahead is used only under ``VirtioVsock``'s state lock.
final class VsockReadAhead: @unchecked Sendable {
    /// A filled receive buffer.
    struct Packet {
        let head: UInt16
        /// Where its header goes.
        let header: UnsafeMutableRawBufferPointer
        /// Its payload: `length` bytes at `payload`, with room for `capacity`.
        let payload: UnsafeMutableRawPointer
        var length: Int
        let capacity: Int

        /// Where more bytes would go, if there is room.
        var room: UnsafeMutableRawBufferPointer { .init(start: payload + length, count: capacity - length) }
    }

    private var packets: [Packet] = []
    /// Index of the oldest packet in ``packets``.
    private var start = 0
    /// Bytes copied out of returned buffers, which go before any packet.
    private var spilled: [UInt8] = []
    private var spilledStart = 0
    /// Bytes held, in packets and spilled.
    private(set) var count = 0
    /// The longest packet appended since the read-ahead was last empty (at least the longest
    /// one held).
    private(set) var longestPacket = 0

    init() {}

    var isEmpty: Bool { count == 0 }
    /// Receive buffers held.
    var packetCount: Int { packets.count - start }
    /// Bytes that wait outside receive buffers.
    var spilledCount: Int { spilled.count - spilledStart }
    /// The oldest packet, when no spilled bytes go before it.
    var firstPacket: Packet? { spilledCount == 0 && start < packets.count ? packets[start] : nil }

    func append(_ packet: Packet) {
        packets.append(packet)
        count += packet.length
        longestPacket = max(longestPacket, packet.length)
    }

    /// The newest packet's free room, which the next read fills first, so that held buffers
    /// are full whatever sizes the host socket's reads come in; empty when there is none.
    /// `maxLength` bounds the packet's length.
    func lastRoom(maxLength: Int) -> UnsafeMutableRawBufferPointer {
        guard start < packets.count, spilledCount == 0 else { return .init(start: nil, count: 0) }
        let room = packets[packets.count - 1].room
        return .init(rebasing: room.prefix(max(0, maxLength - packets[packets.count - 1].length)))
    }

    /// Counts `count` more bytes in the newest packet (read into ``lastRoom(maxLength:)``).
    func extendLast(by count: Int) {
        let last = packets.count - 1
        precondition(last >= start && count <= packets[last].capacity - packets[last].length)
        packets[last].length += count
        self.count += count
        longestPacket = max(longestPacket, packets[last].length)
    }

    /// Takes the oldest packet out (``firstPacket``).
    func removeFirstPacket() {
        count -= packets[start].length
        start += 1
        if start == packets.count { clearPackets() }
    }

    /// Copies every packet's bytes to the spilled bytes, in order; returns their buffers, which
    /// the guest must get back (empty).
    func spill() -> [UInt16] {
        let heads = packets[start...].map(\.head)
        let before = spilled.count
        for packet in packets[start...] {
            spilled.append(contentsOf: UnsafeRawBufferPointer(start: packet.payload, count: packet.length))
        }
        clearPackets()
        count += spilled.count - before
        return heads
    }

    /// Moves up to `destination.count` of the oldest spilled bytes into `destination`; returns
    /// how many.
    func takeSpilled(into destination: UnsafeMutableRawBufferPointer) -> Int {
        let taken = min(destination.count, spilledCount)
        guard taken > 0, let target = destination.baseAddress else { return 0 }
        spilled.withUnsafeBytes { bytes in
            guard let base = bytes.baseAddress else { return }
            target.copyMemory(from: base + spilledStart, byteCount: taken)
        }
        spilledStart += taken
        count -= taken
        if spilledStart == spilled.count {
            spilled.removeAll(keepingCapacity: false)
            spilledStart = 0
        }
        return taken
    }

    /// Forgets everything held; returns the buffers the guest must get back (empty).
    func removeAll() -> [UInt16] {
        let heads = packets[start...].map(\.head)
        clearPackets()
        spilled.removeAll()
        spilledStart = 0
        count = 0
        return heads
    }

    private func clearPackets() {
        count -= packets[start...].reduce(0) { $0 + $1.length }
        packets.removeAll(keepingCapacity: true)
        start = 0
        longestPacket = 0
    }
}
