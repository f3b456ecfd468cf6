import GuestMemory
import Testing
import VirtioDriver

@testable import Virtio

@Suite("Virtqueue layout validation")
struct VirtqueueValidationTests {
    let memory: GuestMemory

    init() throws { memory = try makeMemory() }

    func queue(
        size: UInt16 = 16, maxSize: UInt16 = 256, descriptors: UInt64 = 0x1000, available: UInt64 = 0x2000,
        used: UInt64 = 0x3000
    ) -> Virtqueue {
        var queue = Virtqueue(maxSize: maxSize)
        queue.size = size
        queue.descriptorTable = descriptors
        queue.availableRing = available
        queue.usedRing = used
        return queue
    }

    @Test("a queue starts disabled at its maximum size with no vector")
    func initialState() {
        let queue = Virtqueue(maxSize: 128)
        #expect(queue.size == 128)
        #expect(queue.maxSize == 128)
        #expect(!queue.ready)
        #expect(queue.msixVector == 0xFFFF)
        #expect(queue.nextAvailable == 0)
        #expect(queue.nextUsed == 0)
    }

    @Test(
        "power-of-two sizes up to the maximum with aligned rings inside RAM are accepted", arguments: [1, 2, 64, 256])
    func validLayouts(size: UInt16) throws {
        try queue(size: size).validate(memory: memory)
        // Each ring may end right at the end of RAM.
        let n = UInt64(size)
        let end = memory.size
        try queue(
            size: size, descriptors: end - 16 * n, available: end - (6 + 2 * n), used: end - ((6 + 8 * n + 3) & ~3)
        )
        .validate(memory: memory)
    }

    @Test(
        "sizes that are zero, not a power of two, or above the maximum are refused",
        arguments: [0, 3, 100, 255, 512, 0xFFFF])
    func invalidSizes(size: UInt16) {
        #expect(throws: VirtqueueError.invalidSize(size)) { try queue(size: size).validate(memory: memory) }
    }

    @Test("the driver may choose a size below the device maximum but not above it")
    func sizeAgainstMaximum() throws {
        try queue(size: 8, maxSize: 8).validate(memory: memory)
        #expect(throws: VirtqueueError.invalidSize(16)) { try queue(size: 16, maxSize: 8).validate(memory: memory) }
    }

    @Test(
        "misaligned rings are refused",
        arguments: [
            (UInt64(0x1008), UInt64(0x2000), UInt64(0x3000), "descriptor table", UInt64(0x1008)),
            (0x1001, 0x2000, 0x3000, "descriptor table", 0x1001),
            (0x1000, 0x2001, 0x3000, "available ring", 0x2001),
            (0x1000, 0x2000, 0x3002, "used ring", 0x3002),
            (0x1000, 0x2000, 0x3001, "used ring", 0x3001),
        ])
    func misaligned(descriptors: UInt64, available: UInt64, used: UInt64, what: String, address: UInt64) {
        #expect(throws: VirtqueueError.badRing(what, address: address)) {
            try queue(descriptors: descriptors, available: available, used: used).validate(memory: memory)
        }
    }

    @Test(
        "rings outside RAM or running past its end are refused",
        arguments: [
            // 16 descriptors take 256 bytes; 0xFFF10 + 256 runs 16 bytes past the end of 1 MiB.
            (UInt64(0xF_FF10), UInt64(0x2000), UInt64(0x3000), "descriptor table", UInt64(0xF_FF10)),
            (0x10_0000, 0x2000, 0x3000, "descriptor table", 0x10_0000),
            (0xFFFF_FFFF_FFFF_FFF0, 0x2000, 0x3000, "descriptor table", 0xFFFF_FFFF_FFFF_FFF0),
            // The available ring is 6 + 2 * 16 = 38 bytes.
            (0x1000, 0xF_FFE0, 0x3000, "available ring", 0xF_FFE0),
            (0x1000, 0x8000_0000, 0x3000, "available ring", 0x8000_0000),
            // The used ring is 6 + 8 * 16 = 134 bytes.
            (0x1000, 0x2000, 0xF_FF80, "used ring", 0xF_FF80),
            (0x1000, 0x2000, 0xFFFF_FFFF_FFFF_FFFC, "used ring", 0xFFFF_FFFF_FFFF_FFFC),
        ])
    func outsideMemory(descriptors: UInt64, available: UInt64, used: UInt64, what: String, address: UInt64) {
        #expect(throws: VirtqueueError.badRing(what, address: address)) {
            try queue(descriptors: descriptors, available: available, used: used).validate(memory: memory)
        }
    }

    @Test("reset returns a queue to its power-on state")
    func reset() throws {
        var driver = try QueueDriver(memory: memory, size: 8)
        var queue = try driver.deviceQueue(maxSize: 64)
        queue.msixVector = 3
        try driver.offer([.readable(try driver.allocate(8), 8)])
        let chain = try #require(try queue.popChain(memory: memory))
        try queue.pushUsed(head: chain.head, written: 0, memory: memory)
        queue.reset()
        #expect(queue.size == 64)
        #expect(queue.maxSize == 64)
        #expect(!queue.ready)
        #expect(queue.descriptorTable == 0 && queue.availableRing == 0 && queue.usedRing == 0)
        #expect(queue.msixVector == 0xFFFF)
        #expect(queue.nextAvailable == 0 && queue.nextUsed == 0)
    }
}

@Suite("Virtqueue requests")
struct VirtqueueRequestTests {
    let memory: GuestMemory
    var driver: QueueDriver

    init() throws {
        memory = try makeMemory()
        driver = try QueueDriver(memory: memory, size: 16)
    }

    @Test("a queue that is not ready, or has nothing available, yields no chain")
    mutating func nothingAvailable() throws {
        var queue = try driver.deviceQueue()
        #expect(try queue.popChain(memory: memory) == nil)
        try driver.offer([.readable(0x4_0000, 8)])
        queue.ready = false
        #expect(try queue.popChain(memory: memory) == nil)
        queue.ready = true
        #expect(try queue.popChain(memory: memory) != nil)
        #expect(try queue.popChain(memory: memory) == nil)
    }

    @Test("a single readable descriptor comes back as a one-buffer chain")
    mutating func singleDescriptor() throws {
        var queue = try driver.deviceQueue()
        let data = try driver.place(Array("hello, device".utf8))
        let head = try driver.offer([.readable(data, 13)])
        let chain = try #require(try queue.popChain(memory: memory))
        #expect(chain.head == head)
        #expect(chain.buffers == [.init(address: data, length: 13, isWritable: false)])
        #expect(chain.writable.isEmpty)
        #expect(try chain.readBytes(memory: memory) == Array("hello, device".utf8))
        #expect(try chain.readBytes(memory: memory, limit: 5) == Array("hello".utf8))
        #expect(queue.nextAvailable == 1)
        #expect(try queue.popChain(memory: memory) == nil)
    }

    @Test("a three-descriptor chain keeps its order, readable buffers before writable ones")
    mutating func threeDescriptors() throws {
        var queue = try driver.deviceQueue()
        let header = try driver.place([1, 2, 3, 4])
        let body = try driver.place([5, 6, 7, 8, 9, 10])
        let reply = try driver.allocate(10, fill: 0xEE)
        // Scattered descriptor indices: 9 -> 2 -> 14.
        let head = try driver.addChain(
            [.readable(header, 4), .readable(body, 6), .writable(reply, 10)], at: [9, 2, 14])
        try driver.publish(head)

        let chain = try #require(try queue.popChain(memory: memory))
        #expect(chain.head == 9)
        #expect(chain.buffers.map(\.address) == [header, body, reply])
        #expect(chain.buffers.map(\.length) == [4, 6, 10])
        #expect(chain.readable.count == 2)
        #expect(chain.writable == [.init(address: reply, length: 10, isWritable: true)])
        #expect(try chain.readBytes(memory: memory) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
        #expect(try chain.readBytes(memory: memory, limit: 6) == [1, 2, 3, 4, 5, 6])

        // writeBytes fills writable buffers in order and reports what fit.
        #expect(try chain.writeBytes([0xA1, 0xA2, 0xA3], memory: memory) == 3)
        #expect(try memory.read(at: reply, count: 4) == [0xA1, 0xA2, 0xA3, 0xEE])
        #expect(try chain.writeBytes([UInt8](repeating: 0x55, count: 32), memory: memory) == 10)
        #expect(try memory.read(at: reply, count: 10) == [UInt8](repeating: 0x55, count: 10))
        #expect(try memory.read(at: reply + 10, count: 1) != [0x55])
    }

    @Test("writeBytes spreads data across several writable buffers")
    mutating func scatterWrite() throws {
        var queue = try driver.deviceQueue()
        let a = try driver.allocate(3)
        let b = try driver.allocate(5)
        try driver.offer([.readable(try driver.allocate(4), 4), .writable(a, 3), .writable(b, 5)])
        let chain = try #require(try queue.popChain(memory: memory))
        #expect(try chain.writeBytes(Array(1...7), memory: memory) == 7)
        #expect(try memory.read(at: a, count: 3) == [1, 2, 3])
        #expect(try memory.read(at: b, count: 5) == [4, 5, 6, 7, 0])
    }

    @Test("pushUsed writes the element's id and length, then the used index")
    mutating func pushUsed() throws {
        var queue = try driver.deviceQueue()
        for _ in 0..<3 { try driver.offer([.writable(try driver.allocate(16), 16)]) }
        var heads: [UInt16] = []
        while let chain = try queue.popChain(memory: memory) { heads.append(chain.head) }
        #expect(heads == [0, 1, 2])
        try queue.pushUsed(head: 2, written: 7, memory: memory)
        #expect(try driver.usedIndex == 1)
        try queue.pushUsed(head: 0, written: 16, memory: memory)
        try queue.pushUsed(head: 1, written: 0, memory: memory)
        #expect(try driver.usedIndex == 3)
        #expect(queue.nextUsed == 3)
        #expect(try driver.used(0) == (2, 7))
        #expect(try driver.used(1) == (0, 16))
        #expect(try driver.used(2) == (1, 0))
    }

    @Test("the available and used indices wrap from 65535 to 0")
    mutating func indexWrapAround() throws {
        var queue = try driver.deviceQueue()
        let buffer = try driver.allocate(8)
        try driver.addChain([.writable(buffer, 8)], at: [5])
        for slot in 0..<driver.size { try driver.setRingEntry(slot, head: 5) }
        // Publish and consume in batches of the queue size until just short of the wrap.
        var consumed = 0
        while consumed < 65_535 {
            let batch = min(Int(driver.size), 65_535 - consumed)
            try driver.setAvailableIndex(UInt16(consumed + batch))
            for _ in 0..<batch {
                let chain = try #require(try queue.popChain(memory: memory))
                try queue.pushUsed(head: chain.head, written: 1, memory: memory)
            }
            consumed += batch
        }
        #expect(queue.nextAvailable == 65_535)
        #expect(try driver.usedIndex == 65_535)
        #expect(try queue.popChain(memory: memory) == nil)

        // Two more requests: the index goes 65535 -> 0 -> 1.
        try driver.setRingEntry(65_535 % driver.size, head: 5)
        try driver.setRingEntry(0, head: 5)
        try driver.setAvailableIndex(1)
        let first = try #require(try queue.popChain(memory: memory))
        try queue.pushUsed(head: first.head, written: 8, memory: memory)
        #expect(queue.nextAvailable == 0)
        #expect(try driver.usedIndex == 0)
        #expect(try driver.used(65_535) == (5, 8))
        let second = try #require(try queue.popChain(memory: memory))
        try queue.pushUsed(head: second.head, written: 4, memory: memory)
        #expect(queue.nextAvailable == 1)
        #expect(try driver.usedIndex == 1)
        #expect(try driver.used(0) == (5, 4))
        #expect(try queue.popChain(memory: memory) == nil)
    }

    @Test("a full ring of requests can be outstanding at once")
    mutating func fullRing() throws {
        var queue = try driver.deviceQueue()
        for _ in 0..<driver.size { try driver.offer([.readable(try driver.allocate(4), 4)]) }
        var count = 0
        while try queue.popChain(memory: memory) != nil { count += 1 }
        #expect(count == Int(driver.size))
    }

    @Test("the driver can suppress interrupts through the available ring flags")
    func interruptSuppression() throws {
        var queue = try driver.deviceQueue()
        // A nested function may mutate the queue; #expect's closure may not.
        func interrupts() -> Bool { queue.wantsInterrupt(memory: memory) }
        #expect(interrupts())
        try driver.suppressInterrupts(true)
        #expect(!interrupts())
        try driver.suppressInterrupts(false)
        #expect(interrupts())
    }

    @Test("event index: an interrupt only when the used index passes the driver's used_event")
    mutating func eventIndexInterrupts() throws {
        var queue = try driver.deviceQueue()
        // A nested function may mutate the queue; #expect's closure may not.
        func interrupts() -> Bool { queue.wantsInterrupt(memory: memory) }
        queue.eventIndex = true
        let usedEvent = driver.availableRing + 4 + 2 * UInt64(driver.size)
        for _ in 0..<4 { try driver.offer([.writable(try driver.allocate(4), 4)]) }
        func complete(_ count: Int) throws {
            for _ in 0..<count {
                let chain = try #require(try queue.popChain(memory: memory))
                try queue.pushUsed(head: chain.head, written: 4, memory: memory)
            }
        }
        try memory.store(UInt16(1), at: usedEvent)  // "interrupt me once entry 1 is used"
        try complete(1)
        #expect(!interrupts(), "used index 1 has not passed used_event 1")
        try complete(1)
        #expect(interrupts(), "used index 2 passed used_event 1")
        try complete(1)
        #expect(!interrupts(), "no new used_event: no second interrupt")
        try memory.store(UInt16(3), at: usedEvent)
        try complete(1)
        #expect(interrupts(), "used index 4 passed the new used_event 3")
        // The flags no longer count in this mode.
        try driver.suppressInterrupts(true)
        try memory.store(UInt16(4), at: usedEvent)
        try driver.offer([.writable(try driver.allocate(4), 4)])
        try complete(1)
        #expect(interrupts())
    }

    @Test("event index: a drained queue asks for a kick at the next entry, and sees one added meanwhile")
    mutating func eventIndexKicks() throws {
        var queue = try driver.deviceQueue()
        queue.eventIndex = true
        let availEvent = driver.usedRing + 4 + 8 * UInt64(driver.size)
        try memory.store(UInt16(0xBEEF), at: availEvent)
        for _ in 0..<3 { try driver.offer([.readable(try driver.allocate(4), 4)]) }
        var popped = 0
        while try queue.popChain(memory: memory) != nil { popped += 1 }
        #expect(popped == 3)
        #expect(try memory.load(UInt16.self, at: availEvent) == 3, "avail_event: kick when entry 3 is added")
        try driver.offer([.readable(try driver.allocate(4), 4)])
        #expect(try queue.popChain(memory: memory) != nil)
        #expect(try queue.popChain(memory: memory) == nil)
        #expect(try memory.load(UInt16.self, at: availEvent) == 4)
    }

    @Test("a chain may be as large as DescriptorChain.maxTotalLength but no larger")
    func totalLengthLimit() throws {
        let memory = try makeMemory(size: 2 << 20)
        let mib: UInt32 = 1 << 20
        #expect(DescriptorChain.maxTotalLength == 64 * UInt64(mib))

        var driver = try QueueDriver(memory: memory, size: 128)
        var queue = try driver.deviceQueue()
        // 64 descriptors of 1 MiB each (all the same guest buffer): exactly the limit.
        try driver.offer(Array(repeating: .writable(UInt64(mib), mib), count: 64))
        let chain = try #require(try queue.popChain(memory: memory))
        #expect(chain.buffers.count == 64)

        // 65 of them: over.
        let head = try driver.offer(Array(repeating: .writable(UInt64(mib), mib), count: 65))
        #expect(throws: VirtqueueError.chainTooLarge(head: head)) { try queue.popChain(memory: memory) }

        // One byte over.
        var buffers = Array(repeating: QueueDriver.Buffer.readable(UInt64(mib), mib), count: 64)
        buffers.append(.writable(0x4_0000, 1))
        let overByOne = try driver.offer(buffers)
        #expect(throws: VirtqueueError.chainTooLarge(head: overByOne)) { try queue.popChain(memory: memory) }
    }
}

@Suite("Virtqueue against a malicious driver")
struct VirtqueueMaliciousTests {
    let memory: GuestMemory
    var driver: QueueDriver

    init() throws {
        memory = try makeMemory()
        driver = try QueueDriver(memory: memory, size: 16)
    }

    /// Publishes descriptor `head` and pops it, expecting `error`.
    mutating func expectPop(
        head: UInt16 = 0, throws error: VirtqueueError, sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        var queue = try driver.deviceQueue()
        try driver.publish(head)
        #expect(throws: error, sourceLocation: sourceLocation) { try queue.popChain(memory: memory) }
    }

    @Test("a descriptor that chains back to an earlier one is a loop")
    mutating func loop() throws {
        try driver.setDescriptor(0, address: 0x4_0000, length: 16, flags: QueueDriver.flagNext, next: 1)
        try driver.setDescriptor(1, address: 0x4_0000, length: 16, flags: QueueDriver.flagNext, next: 2)
        try driver.setDescriptor(2, address: 0x4_0000, length: 16, flags: QueueDriver.flagNext, next: 0)
        try expectPop(throws: .chainTooLong(head: 0))
    }

    @Test("a descriptor that chains to itself is a loop")
    mutating func selfLoop() throws {
        try driver.setDescriptor(7, address: 0x4_0000, length: 0, flags: QueueDriver.flagNext, next: 7)
        try expectPop(head: 7, throws: .chainTooLong(head: 7))
    }

    @Test("a loop in a one-entry queue is caught too")
    func loopInTinyQueue() throws {
        var driver = try QueueDriver(memory: memory, size: 1)
        var queue = try driver.deviceQueue()
        try driver.setDescriptor(0, address: 0x4_0000, length: 1, flags: QueueDriver.flagNext, next: 0)
        try driver.publish(0)
        #expect(throws: VirtqueueError.chainTooLong(head: 0)) { try queue.popChain(memory: memory) }
    }

    @Test("a next index at or beyond the queue size is refused", arguments: [UInt16(16), 17, 0xFFFF])
    mutating func nextOutOfRange(next: UInt16) throws {
        try driver.setDescriptor(0, address: 0x4_0000, length: 16, flags: QueueDriver.flagNext, next: next)
        try expectPop(throws: .descriptorOutOfRange(next))
    }

    @Test(
        "a head index in the available ring at or beyond the queue size is refused",
        arguments: [UInt16(16), 0x8000, 0xFFFF])
    mutating func headOutOfRange(head: UInt16) throws {
        try expectPop(head: head, throws: .descriptorOutOfRange(head))
    }

    @Test(
        "buffers outside RAM, crossing its end, or with absurd lengths are refused",
        arguments: [
            (0x10_0000, 1),  // just past the end
            (0x20_0000, 16),
            (0xF_FFF0, 32),  // crosses the end
            (0xF_FFFF, 2),
            (0, UInt32.max),  // length near 4 GiB
            (0x4_0000, UInt32.max - 15),
            (0xFFFF_FFFF_FFFF_FFF0, 0x20),  // address + length wraps around
            (UInt64.max, 1),
        ] as [(UInt64, UInt32)])
    mutating func bufferOutsideMemory(address: UInt64, length: UInt32) throws {
        try driver.setDescriptor(0, address: 0x4_0000, length: 16, flags: QueueDriver.flagNext, next: 1)
        try driver.setDescriptor(1, address: address, length: length, flags: QueueDriver.flagWrite, next: 0)
        try expectPop(throws: .bufferOutsideMemory(address: address, length: length))
    }

    @Test("an indirect descriptor is refused because VIRTIO_F_INDIRECT_DESC was not offered")
    mutating func indirect() throws {
        let table = try driver.allocate(32)
        try driver.setDescriptor(0, address: table, length: 32, flags: QueueDriver.flagIndirect, next: 0)
        try expectPop(throws: .indirectNotNegotiated)
    }

    @Test("an indirect flag in the middle of a chain is refused too")
    mutating func indirectInChain() throws {
        try driver.setDescriptor(0, address: 0x4_0000, length: 16, flags: QueueDriver.flagNext, next: 1)
        try driver.setDescriptor(
            1, address: 0x4_1000, length: 32, flags: QueueDriver.flagIndirect | QueueDriver.flagNext, next: 2)
        try expectPop(throws: .indirectNotNegotiated)
    }

    @Test(
        "an available index that jumps ahead by more than the queue size is refused",
        arguments: [UInt16(17), 100, 0x8000, 0xFFFF])
    mutating func availableIndexJump(index: UInt16) throws {
        var queue = try driver.deviceQueue()
        try driver.setAvailableIndex(index)
        #expect(throws: VirtqueueError.availableIndexJump(from: 0, to: index)) { try queue.popChain(memory: memory) }
    }

    @Test("an available index that jumps by exactly the queue size is fine")
    mutating func availableIndexFullRing() throws {
        var queue = try driver.deviceQueue()
        try driver.addChain([.readable(0x4_0000, 4)], at: [0])
        try driver.setAvailableIndex(16)
        for _ in 0..<16 { #expect(try queue.popChain(memory: memory)?.head == 0) }
        #expect(try queue.popChain(memory: memory) == nil)
    }

    @Test("an available index that runs backwards is a jump, not a request")
    mutating func availableIndexBackwards() throws {
        var queue = try driver.deviceQueue()
        try driver.offer([.readable(0x4_0000, 4)])
        try driver.offer([.readable(0x4_0000, 4)])
        _ = try queue.popChain(memory: memory)
        _ = try queue.popChain(memory: memory)
        try driver.setAvailableIndex(1)
        #expect(throws: VirtqueueError.availableIndexJump(from: 2, to: 1)) { try queue.popChain(memory: memory) }
    }

    @Test("rings the driver moved outside RAM after enabling are reported, not read")
    func ringsOutsideMemory() throws {
        var queue = try driver.deviceQueue()
        queue.availableRing = 0x40_0000
        #expect(throws: VirtqueueError.badRing("ring access", address: 0x40_0002)) {
            try queue.popChain(memory: memory)
        }
        var usedOutside = try driver.deviceQueue()
        usedOutside.usedRing = 0x40_0000
        #expect(throws: VirtqueueError.badRing("used ring", address: 0x40_0004)) {
            try usedOutside.pushUsed(head: 0, written: 0, memory: memory)
        }
    }

    @Test("every error describes itself")
    func descriptions() {
        let errors: [VirtqueueError] = [
            .invalidSize(3), .badRing("used ring", address: 0x1000), .availableIndexJump(from: 1, to: 40),
            .descriptorOutOfRange(99), .chainTooLong(head: 4), .chainTooLarge(head: 5),
            .bufferOutsideMemory(address: 0xDEAD_0000, length: 4), .indirectNotNegotiated,
            .malformedRequest("no status"),
        ]
        for error in errors { #expect(!error.description.isEmpty) }
        #expect(VirtqueueError.badRing("used ring", address: 0x1000).description.contains("0x1000"))
        #expect(VirtqueueError.bufferOutsideMemory(address: 0xDEAD_0000, length: 4).description.contains("0xdead0000"))
    }
}

@Suite("Descriptor chains")
struct DescriptorChainTests {
    typealias Buffer = DescriptorChain.Buffer

    /// A header and payload split over readable and writable buffers, as drivers lay them out.
    let chain = DescriptorChain(
        head: 0,
        buffers: [
            Buffer(address: 0x100, length: 10, isWritable: false),
            Buffer(address: 0x200, length: 20, isWritable: false),
            Buffer(address: 0x300, length: 44, isWritable: true),
            Buffer(address: 0x400, length: 4096, isWritable: true),
            Buffer(address: 0x2000, length: 8, isWritable: true),
        ])

    @Test("buffers beyond the two held inline keep their order and compare by content")
    func inlineAndMore() {
        #expect(chain.buffers.count == 5)
        #expect(chain.buffers.map(\.address) == [0x100, 0x200, 0x300, 0x400, 0x2000])
        #expect(chain.buffers == DescriptorBuffers(chain.readable + chain.writable))
        #expect(chain.buffers != DescriptorBuffers(chain.readable))
        #expect(DescriptorBuffers() == [])
        #expect(chain.readableLength == 30 && chain.writableLength == 4148)
    }

    @Test("segments skip a header across buffers, stop at the limit, and keep to one direction")
    func segments() {
        let payload = Array(chain.segments(writable: true, skipping: 44, limit: 4100))
        #expect(
            payload == [
                Buffer(address: 0x400, length: 4096, isWritable: true),
                Buffer(address: 0x2000, length: 4, isWritable: true),
            ])
        // A skip that ends inside a buffer starts there; one past everything leaves nothing.
        #expect(
            Array(chain.segments(writable: false, skipping: 12)) == [
                Buffer(address: 0x202, length: 18, isWritable: false)
            ])
        #expect(Array(chain.segments(writable: false, skipping: 30)).isEmpty)
        #expect(Array(chain.segments(writable: true, skipping: 0, limit: 0)).isEmpty)
        // The array form says the same for any list of buffers.
        #expect(DescriptorChain.trimmed(chain.writable, skipping: 44, limit: 4100) == payload)
    }

    @Test("forEachSegment yields what segments does, for every skip and limit across the buffers")
    func forEachSegment() {
        for writable in [false, true] {
            for skip in [0, 5, 10, 12, 30, 44, 45, 4140, 4148, 5000] {
                for limit in [0, 1, 18, 4096, 4100, Int.max] {
                    var pieces: [Buffer] = []
                    chain.forEachSegment(writable: writable, skipping: skip, limit: limit) { pieces.append($0) }
                    #expect(
                        pieces == Array(chain.segments(writable: writable, skipping: skip, limit: limit)),
                        "writable \(writable), skip \(skip), limit \(limit)")
                }
            }
        }
        // A body's error ends the walk and reaches the caller.
        struct Stop: Error {}
        var calls = 0
        #expect(throws: Stop.self) {
            try chain.forEachSegment(writable: true, skipping: 0) { (_) throws(Stop) in
                calls += 1
                throw Stop()
            }
        }
        #expect(calls == 1)
    }
}
