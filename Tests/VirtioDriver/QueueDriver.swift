import GuestMemory
import Virtio

/// The driver side of a split virtqueue, laid out in guest memory the way a Linux driver lays
/// it out: a descriptor table, an available ring the driver fills and publishes, and a used ring
/// it reads back. It also hands out data buffers from a simple bump allocator.
public struct QueueDriver: Sendable {
    /// One buffer of a request, as the driver describes it.
    public struct Buffer: Sendable, Equatable {
        public var address: UInt64
        public var length: UInt32
        public var writable: Bool

        public static func readable(_ address: UInt64, _ length: UInt32) -> Buffer {
            Buffer(address: address, length: length, writable: false)
        }

        public static func writable(_ address: UInt64, _ length: UInt32) -> Buffer {
            Buffer(address: address, length: length, writable: true)
        }
    }

    public static let flagNext: UInt16 = 1
    public static let flagWrite: UInt16 = 2
    public static let flagIndirect: UInt16 = 4

    public let memory: GuestMemory
    public let size: UInt16
    public let descriptorTable: UInt64
    public let availableRing: UInt64
    public let usedRing: UInt64
    /// The available index the driver has published.
    public private(set) var availableIndex: UInt16 = 0
    private var nextDescriptor: UInt16 = 0
    private var nextData: UInt64

    /// Lays out a queue of `size` entries at `base` and zeroes its rings; data buffers are
    /// allocated from `dataBase`.
    public init(memory: GuestMemory, size: UInt16, base: UInt64 = 0x1000, dataBase: UInt64 = 0x4_0000) throws {
        self.memory = memory
        self.size = size
        let n = UInt64(size)
        descriptorTable = base
        availableRing = base + 16 * n
        usedRing = (availableRing + 6 + 2 * n + 3) & ~3
        nextData = dataBase
        try memory.zero(at: base, count: Int(usedRing + 6 + 8 * n - base))
    }

    /// A device-side queue pointing at these rings, enabled as the transport would after validation.
    public func deviceQueue(maxSize: UInt16 = 256) throws -> Virtqueue {
        var queue = Virtqueue(maxSize: maxSize)
        queue.size = size
        queue.descriptorTable = descriptorTable
        queue.availableRing = availableRing
        queue.usedRing = usedRing
        try queue.validate(memory: memory)
        queue.ready = true
        return queue
    }

    // MARK: - Data buffers

    /// Reserves `count` bytes (16-byte aligned) for a data buffer, filled with `fill`.
    public mutating func allocate(_ count: Int, fill: UInt8 = 0) throws -> UInt64 {
        let address = nextData
        nextData = (nextData + UInt64(count) + 15) & ~15
        try memory.write([UInt8](repeating: fill, count: count), at: address)
        return address
    }

    /// Copies `bytes` into a fresh data buffer.
    public mutating func place(_ bytes: [UInt8]) throws -> UInt64 {
        let address = try allocate(bytes.count)
        try memory.write(bytes, at: address)
        return address
    }

    // MARK: - Descriptors and the available ring

    /// Writes descriptor `index` raw, exactly as given.
    public func setDescriptor(_ index: UInt16, address: UInt64, length: UInt32, flags: UInt16, next: UInt16) throws {
        let base = descriptorTable + 16 * UInt64(index)
        try memory.store(address, at: base)
        try memory.store(length, at: base + 8)
        try memory.store(flags, at: base + 12)
        try memory.store(next, at: base + 14)
    }

    /// Writes `buffers` as a chain into descriptors `indices` (by default the next free ones);
    /// returns the head.
    @discardableResult
    public mutating func addChain(_ buffers: [Buffer], at indices: [UInt16]? = nil) throws -> UInt16 {
        precondition(!buffers.isEmpty)
        let indices =
            indices
            ?? buffers.indices.map { _ in
                defer { nextDescriptor = (nextDescriptor + 1) % size }
                return nextDescriptor
            }
        precondition(indices.count == buffers.count)
        for (i, buffer) in buffers.enumerated() {
            let last = i == buffers.count - 1
            try setDescriptor(
                indices[i], address: buffer.address, length: buffer.length,
                flags: (buffer.writable ? Self.flagWrite : 0) | (last ? 0 : Self.flagNext),
                next: last ? 0 : indices[i + 1])
        }
        return indices[0]
    }

    /// Puts `head` in the next available-ring slot and publishes the new index.
    public mutating func publish(_ head: UInt16) throws {
        try memory.store(head, at: availableRing + 4 + 2 * UInt64(availableIndex % size))
        availableIndex &+= 1
        try memory.store(availableIndex, at: availableRing + 2)
    }

    /// Writes a chain and makes it available; returns the head.
    @discardableResult
    public mutating func offer(_ buffers: [Buffer]) throws -> UInt16 {
        let head = try addChain(buffers)
        try publish(head)
        return head
    }

    /// Writes ring slot `slot` without publishing it.
    public func setRingEntry(_ slot: UInt16, head: UInt16) throws {
        try memory.store(head, at: availableRing + 4 + 2 * UInt64(slot))
    }

    /// Overwrites the published available index (for drivers that misbehave).
    public mutating func setAvailableIndex(_ index: UInt16) throws {
        availableIndex = index
        try memory.store(index, at: availableRing + 2)
    }

    /// Sets VRING_AVAIL_F_NO_INTERRUPT.
    public func suppressInterrupts(_ suppress: Bool) throws {
        try memory.store(UInt16(suppress ? 1 : 0), at: availableRing)
    }

    // MARK: - The used ring

    public var usedIndex: UInt16 {
        get throws { try memory.load(UInt16.self, at: usedRing + 2) }
    }

    /// The used element in ring slot `slot % size`.
    public func used(_ slot: Int) throws -> (id: UInt32, length: UInt32) {
        let base = usedRing + 4 + 8 * UInt64(slot % Int(size))
        return (try memory.load(UInt32.self, at: base), try memory.load(UInt32.self, at: base + 4))
    }
}

/// A guest RAM of `size` bytes at address 0.
public func makeMemory(size: UInt64 = 1 << 20) throws -> GuestMemory {
    try GuestMemory(ranges: [(0, size)])
}
