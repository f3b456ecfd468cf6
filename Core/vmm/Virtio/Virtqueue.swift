import GuestMemory
import Synchronization

/// A split virtqueue (virtio 1.x, section 2.7) as the device side sees it, with every
/// guest-supplied index, address and length checked before use.
///
/// A malformed queue (a descriptor loop, an index out of range, a buffer outside guest RAM, an
/// available index that jumps ahead by more than the queue size) throws ``VirtqueueError``; the
/// transport then marks the device NEEDS_RESET instead of touching memory it should not.
public struct Virtqueue: Sendable {
    /// Descriptor flags.
    static let flagNext: UInt16 = 1
    static let flagWrite: UInt16 = 2
    static let flagIndirect: UInt16 = 4
    /// Available-ring flag: the driver does not want interrupts.
    static let availNoInterrupt: UInt16 = 1

    /// Largest size the device allows (the driver may pick a smaller power of two).
    public let maxSize: UInt16
    public var size: UInt16
    public var ready = false
    public var descriptorTable: UInt64 = 0
    public var availableRing: UInt64 = 0
    public var usedRing: UInt64 = 0
    /// MSI-X vector for this queue's interrupts (0xFFFF: none).
    public var msixVector: UInt16 = 0xFFFF
    /// Next available-ring slot the device will read.
    public private(set) var nextAvailable: UInt16 = 0
    /// Next used-ring slot the device will write.
    public private(set) var nextUsed: UInt16 = 0
    /// VIRTIO_F_EVENT_IDX was negotiated: notifications follow used_event and avail_event
    /// instead of the ring flags.
    public var eventIndex = false
    /// ``nextUsed`` when ``wantsInterrupt(memory:)`` last decided (event-index mode).
    private var checkedUsed: UInt16 = 0

    public init(maxSize: UInt16) {
        self.maxSize = maxSize
        self.size = maxSize
    }

    /// Back to the state after device reset.
    public mutating func reset() {
        self = Virtqueue(maxSize: maxSize)
    }

    /// Checks the layout the driver programmed before the queue is enabled.
    public func validate(memory: GuestMemory) throws(VirtqueueError) {
        guard size > 0, size <= maxSize, size.nonzeroBitCount == 1 else { throw .invalidSize(size) }
        let n = Int(size)
        try check(memory, descriptorTable, 16 * n, alignment: 16, "descriptor table")
        try check(memory, availableRing, 6 + 2 * n, alignment: 2, "available ring")
        try check(memory, usedRing, 6 + 8 * n, alignment: 4, "used ring")
    }

    private func check(_ memory: GuestMemory, _ address: UInt64, _ count: Int, alignment: UInt64, _ what: String)
        throws(VirtqueueError)
    {
        guard address % alignment == 0, memory.contains(address: address, count: count) else {
            throw .badRing(what, address: address)
        }
    }

    // MARK: - Consuming requests

    /// The next request the driver made available, or nil when there is none.
    public mutating func popChain(memory: GuestMemory) throws(VirtqueueError) -> DescriptorChain? {
        guard ready else { return nil }
        var availableIndex = try load(UInt16.self, memory, availableRing + 2)
        // Read ring entries and descriptors only after the index that published them.
        atomicMemoryFence(ordering: .acquiring)
        var outstanding = availableIndex &- nextAvailable
        if outstanding == 0 {
            guard eventIndex else { return nil }
            // Drained: ask for a kick when the driver adds the next entry, then look again, for
            // one it added before it could see the request (virtio 1.x, 2.7.10).
            try store(nextAvailable, memory, usedRing + 4 + 8 * UInt64(size))
            atomicMemoryFence(ordering: .sequentiallyConsistent)
            availableIndex = try load(UInt16.self, memory, availableRing + 2)
            atomicMemoryFence(ordering: .acquiring)
            outstanding = availableIndex &- nextAvailable
            if outstanding == 0 { return nil }
        }
        guard outstanding <= size else { throw .availableIndexJump(from: nextAvailable, to: availableIndex) }
        let slot = UInt64(nextAvailable % size)
        let head = try load(UInt16.self, memory, availableRing + 4 + 2 * slot)
        nextAvailable &+= 1
        return try walk(head: head, memory: memory)
    }

    /// Gives back the chain ``popChain(memory:)`` returned last: the device could not use it
    /// yet (a receive buffer with nothing to put in it), and will pop it again later.
    public mutating func undoPop() {
        nextAvailable &-= 1
    }

    /// Follows the descriptor chain at `head`.
    func walk(head: UInt16, memory: GuestMemory) throws(VirtqueueError) -> DescriptorChain {
        var buffers: [DescriptorChain.Buffer] = []
        var index = head
        var total: UInt64 = 0
        while true {
            guard index < size else { throw .descriptorOutOfRange(index) }
            guard buffers.count < Int(size) else { throw .chainTooLong(head: head) }
            let base = descriptorTable + 16 * UInt64(index)
            let address = try load(UInt64.self, memory, base)
            let length = try load(UInt32.self, memory, base + 8)
            let flags = try load(UInt16.self, memory, base + 12)
            let next = try load(UInt16.self, memory, base + 14)
            guard flags & Self.flagIndirect == 0 else { throw .indirectNotNegotiated }
            guard memory.contains(address: address, count: Int(length)) else {
                throw .bufferOutsideMemory(address: address, length: length)
            }
            total += UInt64(length)
            guard total <= DescriptorChain.maxTotalLength else { throw .chainTooLarge(head: head) }
            buffers.append(.init(address: address, length: length, isWritable: flags & Self.flagWrite != 0))
            guard flags & Self.flagNext != 0 else { break }
            index = next
        }
        return DescriptorChain(head: head, buffers: buffers)
    }

    /// Returns a finished request to the driver with `written` bytes written into its buffers.
    public mutating func pushUsed(head: UInt16, written: UInt32, memory: GuestMemory) throws(VirtqueueError) {
        let slot = UInt64(nextUsed % size)
        try store(UInt32(head), memory, usedRing + 4 + 8 * slot)
        try store(written, memory, usedRing + 8 + 8 * slot)
        nextUsed &+= 1
        // The element must be visible before the index that publishes it.
        atomicMemoryFence(ordering: .releasing)
        try store(nextUsed, memory, usedRing + 2)
    }

    /// Whether the driver wants an interrupt for the used buffers pushed since the last call:
    /// with event indexes, when they pass its used_event (vring_need_event); otherwise unless
    /// it set VIRTQ_AVAIL_F_NO_INTERRUPT.
    public mutating func wantsInterrupt(memory: GuestMemory) -> Bool {
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        if eventIndex {
            let previous = checkedUsed
            checkedUsed = nextUsed
            // An unreadable used_event (the ring was validated, so never) means: interrupt.
            guard let usedEvent = try? memory.load(UInt16.self, at: availableRing + 4 + 2 * UInt64(size)) else {
                return true
            }
            return nextUsed &- usedEvent &- 1 < nextUsed &- previous
        }
        let flags = (try? memory.load(UInt16.self, at: availableRing)) ?? 0
        return flags & Self.availNoInterrupt == 0
    }

    private func load<T: FixedWidthInteger>(_: T.Type, _ memory: GuestMemory, _ address: UInt64) throws(VirtqueueError)
        -> T
    {
        do { return try memory.load(T.self, at: address) } catch { throw .badRing("ring access", address: address) }
    }

    private func store<T: FixedWidthInteger>(_ value: T, _ memory: GuestMemory, _ address: UInt64)
        throws(VirtqueueError)
    {
        do { try memory.store(value, at: address) } catch { throw .badRing("used ring", address: address) }
    }
}

/// One request: the driver's buffers in chain order, readable ones first by convention.
public struct DescriptorChain: Sendable, Equatable {
    public struct Buffer: Sendable, Equatable {
        public var address: UInt64
        public var length: UInt32
        public var isWritable: Bool
    }

    /// Bound on a request's total size, so that a guest cannot make the device allocate or
    /// process gigabytes for one request.
    public static let maxTotalLength: UInt64 = 64 << 20

    public let head: UInt16
    public let buffers: [Buffer]

    public var readable: [Buffer] { buffers.filter { !$0.isWritable } }
    public var writable: [Buffer] { buffers.filter(\.isWritable) }
    /// Total bytes of the readable and of the writable buffers (without building arrays).
    public var readableLength: Int { buffers.reduce(0) { $1.isWritable ? $0 : $0 + Int($1.length) } }
    public var writableLength: Int { buffers.reduce(0) { $1.isWritable ? $0 + Int($1.length) : $0 } }

    /// `buffers` without their first `skip` bytes (a request or packet header) and cut to at
    /// most `limit` bytes: where the payload lies. Empty pieces are left out.
    public static func trimmed(_ buffers: [Buffer], skipping skip: Int, limit: Int = Int.max) -> [Buffer] {
        var skip = skip
        var left = limit
        var result: [Buffer] = []
        for var buffer in buffers where left > 0 {
            let dropped = min(skip, Int(buffer.length))
            skip -= dropped
            buffer.address += UInt64(dropped)
            buffer.length = UInt32(min(Int(buffer.length) - dropped, left))
            guard buffer.length > 0 else { continue }
            left -= Int(buffer.length)
            result.append(buffer)
        }
        return result
    }

    /// Copies up to `limit` bytes of the readable buffers.
    public func readBytes(memory: GuestMemory, limit: Int = Int.max) throws(VirtqueueError) -> [UInt8] {
        var bytes: [UInt8] = []
        for buffer in readable where bytes.count < limit {
            let count = min(Int(buffer.length), limit - bytes.count)
            do { bytes += try memory.read(at: buffer.address, count: count) } catch {
                throw .bufferOutsideMemory(address: buffer.address, length: buffer.length)
            }
        }
        return bytes
    }

    /// Copies `bytes` into the writable buffers in order; returns how many fit.
    @discardableResult
    public func writeBytes(_ bytes: some Collection<UInt8>, memory: GuestMemory) throws(VirtqueueError) -> Int {
        var remaining = bytes[...]
        var written = 0
        for buffer in writable where !remaining.isEmpty {
            let chunk = remaining.prefix(Int(buffer.length))
            do { try memory.write(chunk, at: buffer.address) } catch {
                throw .bufferOutsideMemory(address: buffer.address, length: buffer.length)
            }
            written += chunk.count
            remaining = remaining.dropFirst(chunk.count)
        }
        return written
    }
}

/// What was wrong with a virtqueue; any of these puts the device into NEEDS_RESET.
public enum VirtqueueError: Error, Equatable, CustomStringConvertible {
    case invalidSize(UInt16)
    case badRing(String, address: UInt64)
    case availableIndexJump(from: UInt16, to: UInt16)
    case descriptorOutOfRange(UInt16)
    case chainTooLong(head: UInt16)
    case chainTooLarge(head: UInt16)
    case bufferOutsideMemory(address: UInt64, length: UInt32)
    case indirectNotNegotiated
    case malformedRequest(String)

    public var description: String {
        switch self {
        case .invalidSize(let size): return "queue size \(size) is not a power of two within the maximum"
        case .badRing(let what, let address):
            return "\(what) at 0x\(String(address, radix: 16)) is misaligned or outside guest RAM"
        case .availableIndexJump(let from, let to): return "available index jumped from \(from) to \(to)"
        case .descriptorOutOfRange(let index): return "descriptor index \(index) is outside the queue"
        case .chainTooLong(let head): return "descriptor chain at \(head) is longer than the queue (a loop?)"
        case .chainTooLarge(let head):
            return "descriptor chain at \(head) exceeds \(DescriptorChain.maxTotalLength >> 20) MiB"
        case .bufferOutsideMemory(let address, let length):
            return "buffer 0x\(String(address, radix: 16)) + \(length) is outside guest RAM"
        case .indirectNotNegotiated: return "indirect descriptor used but VIRTIO_F_INDIRECT_DESC was not offered"
        case .malformedRequest(let why): return "malformed request: \(why)"
        }
    }
}
