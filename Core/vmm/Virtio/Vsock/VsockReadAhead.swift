#if canImport(Glibc)
    import Glibc
#endif

/// Bytes read from a host socket before the guest had credit for them, kept in order (a ring).
///
/// Why: a Unix stream socket's writer sleeps until less than a quarter of its send buffer is
/// queued, so a client with the default buffer (about 208 KiB) wakes only once the device has
/// read nearly all of it. Without a place to put those bytes, the device stops reading when the
/// guest's credit runs out, the writer stays asleep, and every credit round trip ends with an
/// empty socket while the writer wakes up. Reading ahead keeps the socket drained, so the writer
/// refills it while the guest catches up; vhost-vsock gets the same from the guest's credit
/// window sitting in the kernel's own send queue.
///
/// Not thread-safe: a connection's buffer is used only under ``VirtioVsock``'s state lock.
final class VsockReadAhead: @unchecked Sendable {
    let capacity: Int
    private let storage: UnsafeMutableRawPointer
    /// Offset of the oldest byte.
    private var start = 0
    /// Bytes held.
    private(set) var count = 0

    init(capacity: Int) {
        precondition(capacity > 0)
        self.capacity = capacity
        storage = .allocate(byteCount: capacity, alignment: 16)
    }

    deinit { storage.deallocate() }

    /// Free space.
    var room: Int { capacity - count }
    var isEmpty: Bool { count == 0 }

    /// Reads what `fd` has into the free space with one `readv` (two pieces when the free space
    /// wraps). Returns what `readv` returned: bytes read, 0 at end of stream, -1 with `errno` set.
    func read(from fd: Int32) -> Int {
        precondition(room > 0, "a read into a full read-ahead buffer would look like the end of the stream")
        let end = (start + count) % capacity
        let firstPiece = min(room, capacity - end)
        let n = withUnsafeTemporaryAllocation(of: iovec.self, capacity: 2) { vectors in
            vectors[0] = iovec(iov_base: storage + end, iov_len: firstPiece)
            vectors[1] = iovec(iov_base: storage, iov_len: room - firstPiece)
            let pieces: Int32 = room > firstPiece ? 2 : 1
            var n: Int
            repeat { n = readv(fd, vectors.baseAddress, pieces) } while n < 0 && errno == EINTR
            return n
        }
        if n > 0 { count += n }
        return n
    }

    /// Moves up to `destination.count` of the oldest bytes into `destination`; returns how many.
    func take(into destination: UnsafeMutableRawBufferPointer) -> Int {
        let taken = min(destination.count, count)
        let firstPiece = min(taken, capacity - start)
        guard let target = destination.baseAddress, taken > 0 else { return 0 }
        target.copyMemory(from: storage + start, byteCount: firstPiece)
        if taken > firstPiece {
            (target + firstPiece).copyMemory(from: storage, byteCount: taken - firstPiece)
        }
        count -= taken
        // Empty, it starts over at the front, so the next read is one piece.
        start = count == 0 ? 0 : (start + taken) % capacity
        return taken
    }
}
