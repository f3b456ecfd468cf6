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
    public private(set) var checkedUsed: UInt16 = 0
    /// ``nextUsed`` when ``wantsInterrupt(memory:)`` last said yes, and how many times it has
    /// (for `vmm status`: whether a stream that stopped was last told of its buffers).
    public private(set) var signalledUsed: UInt16 = 0
    public private(set) var interruptCount: UInt64 = 0

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

    /// Requests the driver made available that the device has not taken yet (0 when the ring
    /// cannot be read, or its index is out of step).
    public func availableCount(memory: GuestMemory) -> Int {
        guard ready, let index = try? memory.load(UInt16.self, at: availableRing + 2) else { return 0 }
        let outstanding = index &- nextAvailable
        return outstanding <= size ? Int(outstanding) : 0
    }

    /// Gives back the chain ``popChain(memory:)`` returned last: the device could not use it
    /// yet (a receive buffer with nothing to put in it), and will pop it again later.
    public mutating func undoPop() {
        nextAvailable &-= 1
    }

    /// Follows the descriptor chain at `head`.
    func walk(head: UInt16, memory: GuestMemory) throws(VirtqueueError) -> DescriptorChain {
        var buffers = DescriptorBuffers()
        var index = head
        var total: UInt64 = 0
        while true {
            guard index < size else { throw .descriptorOutOfRange(index) }
            guard buffers.count < Int(size) else { throw .chainTooLong(head: head) }
            // One translation for the whole 16-byte descriptor: this runs for every packet.
            let base = descriptorTable + 16 * UInt64(index)
            let descriptor: UnsafeMutableRawBufferPointer
            do { descriptor = try memory.buffer(at: base, count: 16) } catch {
                throw .badRing("descriptor table", address: base)
            }
            let address = UInt64(littleEndian: descriptor.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
            let length = UInt32(littleEndian: descriptor.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
            let flags = UInt16(littleEndian: descriptor.loadUnaligned(fromByteOffset: 12, as: UInt16.self))
            let next = UInt16(littleEndian: descriptor.loadUnaligned(fromByteOffset: 14, as: UInt16.self))
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
        let wanted = driverWantsInterrupt(memory: memory)
        if wanted {
            signalledUsed = nextUsed
            interruptCount &+= 1
        }
        return wanted
    }

    private mutating func driverWantsInterrupt(memory: GuestMemory) -> Bool {
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
