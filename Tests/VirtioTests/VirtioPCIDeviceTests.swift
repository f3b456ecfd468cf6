import Devices
import EventLoop
import GuestMemory
import PCI
import Synchronization
import Testing
import VirtioDriver

@testable import Virtio

#if canImport(Glibc)
    import Glibc
#endif

@Suite("virtio-pci transport")
struct VirtioPCIDeviceTests {
    static let barAddress: UInt64 = 0xFE00_0000
    static let msiAddress: UInt64 = 0xFEE0_0000

    let memory: GuestMemory
    let signaler = RecordingSignaler()
    let errors = Collected<String>()
    let pci: VirtioPCIDevice
    let driver: TransportDriver
    var queue: QueueDriver

    init() throws {
        memory = try makeMemory()
        let errors = errors
        pci = VirtioPCIDevice(
            device: VirtioRNG(), memory: memory, barAddress: Self.barAddress, signaler: signaler,
            onError: { errors.append($0) })
        driver = TransportDriver(device: pci)
        queue = try QueueDriver(memory: memory, size: 16)
    }

    /// MSI-X on, with table entry 0 (for configuration changes) and 1 (for queue 0) programmed.
    func enableMSIX() {
        driver.setMSIXControl(enable: true)
        driver.programVector(0, address: Self.msiAddress, data: 0x40)
        driver.programVector(1, address: Self.msiAddress, data: 0x41)
    }

    // MARK: - Vectors

    @Test("an MSI-X vector the table does not have reads back as NO_VECTOR; a valid one sticks")
    func unmappableVectors() {
        // The rng transport has 2 vectors: 0 (config) and 1 (its queue).
        driver.write(TransportDriver.Common.msixConfig, 1, 2)
        #expect(driver.read(TransportDriver.Common.msixConfig, 2) == 1)
        driver.write(TransportDriver.Common.msixConfig, 2, 2)
        #expect(driver.read(TransportDriver.Common.msixConfig, 2) == 0xFFFF)
        driver.selectQueue(0)
        driver.write(TransportDriver.Common.queueMSIXVector, 0x7FF, 2)
        #expect(driver.read(TransportDriver.Common.queueMSIXVector, 2) == 0xFFFF)
        driver.write(TransportDriver.Common.queueMSIXVector, 1, 2)
        #expect(driver.read(TransportDriver.Common.queueMSIXVector, 2) == 1)
    }

    @Test("a device that asks for fewer vectors gets that table: vsock's two, its queues sharing vector 1")
    func sharedQueueVector() throws {
        let directory = "/tmp/vsock-vectors-\(getpid())"
        mkdir(directory, 0o700)
        defer {
            unlink("\(directory)/v.sock")
            rmdir(directory)
        }
        let vsock = VirtioPCIDevice(
            device: try VirtioVsock(guestCID: 3, socketPath: "\(directory)/v.sock"), memory: memory,
            barAddress: Self.barAddress, signaler: signaler, onError: { _ in })
        let vsockDriver = TransportDriver(device: vsock)
        guard let cap = vsockDriver.msixCapability else {
            Issue.record("no MSI-X capability")
            return
        }
        // Message control's low 11 bits: the table size minus one.
        #expect(vsock.readConfig(offset: cap + 2, count: 2) & 0x7FF == 1)
        for index in UInt16(0)..<3 {
            vsockDriver.selectQueue(index)
            vsockDriver.write(TransportDriver.Common.queueMSIXVector, 1, 2)
            #expect(vsockDriver.read(TransportDriver.Common.queueMSIXVector, 2) == 1)
            vsockDriver.write(TransportDriver.Common.queueMSIXVector, 2, 2)
            #expect(vsockDriver.read(TransportDriver.Common.queueMSIXVector, 2) == 0xFFFF)
        }
        // Devices that do not ask keep one per queue and one for configuration changes.
        #expect(VirtioRNG().msixVectors == 2)
    }

    // MARK: - Identity and capabilities

    @Test("the function identifies as a modern virtio device with a 64-bit BAR 0")
    func identity() {
        #expect(pci.readConfig(offset: 0x00, count: 2) == 0x1AF4)
        #expect(pci.readConfig(offset: 0x02, count: 2) == 0x1044)  // 0x1040 + entropy
        #expect(pci.readConfig(offset: 0x08, count: 1) == 1)  // revision 1: modern
        #expect(pci.readConfig(offset: 0x08, count: 4) >> 8 == 0xFF_0000)
        #expect(pci.readConfig(offset: 0x2C, count: 2) == 0x1AF4)
        #expect(pci.readConfig(offset: 0x2E, count: 2) >= 0x40)
        #expect(pci.readConfig(offset: 0x10, count: 4) == 0xFE00_0004)
        #expect(pci.readConfig(offset: 0x14, count: 4) == 0)
        let state = pci.barState
        #expect(state.bars[0] == PCIConfigSpace.BAR(size: 0x8000, is64Bit: true, address: Self.barAddress))
        #expect(!state.memoryEnabled)
        // BAR sizing works through the transport too.
        pci.writeConfig(offset: 0x10, count: 4, value: 0xFFFF_FFFF)
        #expect(pci.readConfig(offset: 0x10, count: 4) == 0xFFFF_8004)
        pci.writeConfig(offset: 0x10, count: 4, value: 0xFE00_0000)
        #expect(pci.barState.bars[0]?.address == Self.barAddress)
    }

    @Test("the capability list holds MSI-X and the four virtio structures in BAR 0")
    func capabilities() throws {
        let caps = driver.capabilities()
        #expect(caps.map(\.id) == [0x11, 0x09, 0x09, 0x09, 0x09])
        for cap in caps { #expect(cap.offset % 4 == 0 && cap.offset >= 0x40) }

        let msix = try #require(driver.msixCapability)
        #expect(pci.readConfig(offset: msix + 2, count: 2) == 1)  // two vectors: size - 1
        #expect(pci.readConfig(offset: msix + 4, count: 4) == 0x4000)  // offset | BIR 0
        #expect(pci.readConfig(offset: msix + 8, count: 4) == 0x6000)

        struct VirtioCap: Equatable {
            let type: UInt32
            let bar: UInt32
            let offset: UInt32
            let length: UInt32
        }
        let virtio = caps.dropFirst().map { cap in
            VirtioCap(
                type: pci.readConfig(offset: cap.offset + 3, count: 1),
                bar: pci.readConfig(offset: cap.offset + 4, count: 1),
                offset: pci.readConfig(offset: cap.offset + 8, count: 4),
                length: pci.readConfig(offset: cap.offset + 12, count: 4))
        }
        #expect(
            virtio == [
                VirtioCap(type: 1, bar: 0, offset: 0x0000, length: 0x40),
                VirtioCap(type: 2, bar: 0, offset: 0x3000, length: 4),
                VirtioCap(type: 3, bar: 0, offset: 0x1000, length: 1),
                VirtioCap(type: 4, bar: 0, offset: 0x2000, length: 0x1000),
            ])
        let notify = caps[2].offset
        #expect(pci.readConfig(offset: notify + 2, count: 1) == 20)  // cap_len with the multiplier
        #expect(pci.readConfig(offset: notify + 16, count: 4) == 4)
        #expect(pci.readConfig(offset: caps[1].offset + 2, count: 1) == 16)
    }

    @Test("only the enable and function-mask bits of MSI-X message control are writable")
    func msixControl() throws {
        let msix = try #require(driver.msixCapability)
        pci.writeConfig(offset: msix + 2, count: 2, value: 0xFFFF)
        #expect(pci.readConfig(offset: msix + 2, count: 2) == 0xC001)
        #expect(pci.msix.isEnabled)
        pci.writeConfig(offset: msix, count: 4, value: 0x0000_FFFF)
        #expect(pci.readConfig(offset: msix + 2, count: 2) == 0x0001)
        #expect(!pci.msix.isEnabled)
        // A byte write to the high half of message control counts too.
        pci.writeConfig(offset: msix + 3, count: 1, value: 0x80)
        #expect(pci.msix.isEnabled)
    }

    // MARK: - Feature negotiation

    @Test("the device offers EVENT_IDX (bit 29) and VERSION_1 (bit 32)")
    func offeredFeatures() {
        driver.write(TransportDriver.Common.deviceFeatureSelect, 0, 4)
        #expect(driver.read(TransportDriver.Common.deviceFeatureSelect, 4) == 0)
        #expect(driver.read(TransportDriver.Common.deviceFeature, 4) == 1 << 29)  // EVENT_IDX
        driver.write(TransportDriver.Common.deviceFeatureSelect, 1, 4)
        #expect(driver.read(TransportDriver.Common.deviceFeatureSelect, 4) == 1)
        #expect(driver.read(TransportDriver.Common.deviceFeature, 4) == 1)  // bit 32: VERSION_1
        driver.write(TransportDriver.Common.deviceFeatureSelect, 2, 4)
        #expect(driver.read(TransportDriver.Common.deviceFeature, 4) == 0)
        #expect(driver.deviceFeatures() == VirtioFeature.version1 | VirtioFeature.eventIndex)
    }

    @Test(
        "FEATURES_OK sticks only for a subset of the offer that includes VERSION_1",
        arguments: [
            (VirtioFeature.version1, true),
            (0, false),  // legacy driver
            (VirtioFeature.version1 | 1 << 28, false),  // INDIRECT_DESC, not offered
            (VirtioFeature.version1 | 1 << 33, false),  // ACCESS_PLATFORM, not offered
            (1 << 5, false),
        ] as [(UInt64, Bool)])
    func featuresOK(features: UInt64, accepted: Bool) {
        #expect(driver.negotiate(features) == accepted)
        #expect(driver.status & (VirtioStatus.acknowledge | VirtioStatus.driver) == 3)
        #expect(driver.driverFeatures() == features)
    }

    @Test("driver features are frozen once FEATURES_OK is set")
    func featuresFrozen() {
        #expect(driver.negotiate())
        driver.setDriverFeatures(0)
        #expect(driver.driverFeatures() == VirtioFeature.version1)
        // Setting FEATURES_OK again does not re-check or drop it.
        driver.setStatus(VirtioStatus.acknowledge | VirtioStatus.driver | VirtioStatus.featuresOK)
        #expect(driver.status & VirtioStatus.featuresOK != 0)
    }

    // MARK: - Queue setup

    @Test("queue registers: size, vector and ring addresses as two 32-bit halves")
    func queueSetup() {
        #expect(driver.read(TransportDriver.Common.numQueues, 2) == 1)
        driver.selectQueue(0)
        #expect(driver.read(TransportDriver.Common.queueSelect, 2) == 0)
        #expect(driver.read(TransportDriver.Common.queueSize, 2) == 256)
        #expect(driver.read(TransportDriver.Common.queueMSIXVector, 2) == 0xFFFF)
        #expect(driver.read(TransportDriver.Common.queueNotifyOff, 2) == 0)
        #expect(!driver.queueEnabled)

        driver.write(TransportDriver.Common.queueSize, 64, 2)
        driver.writeAddress(TransportDriver.Common.queueDesc, 0x1_2345_6000)
        driver.writeAddress(TransportDriver.Common.queueDriver, 0x2_0000_1002)
        driver.writeAddress(TransportDriver.Common.queueDevice, 0x3_0000_2004)
        driver.write(TransportDriver.Common.queueMSIXVector, 1, 2)
        #expect(driver.read(TransportDriver.Common.queueSize, 2) == 64)
        #expect(driver.readAddress(TransportDriver.Common.queueDesc) == 0x1_2345_6000)
        #expect(driver.readAddress(TransportDriver.Common.queueDriver) == 0x2_0000_1002)
        #expect(driver.readAddress(TransportDriver.Common.queueDevice) == 0x3_0000_2004)
        #expect(driver.read(TransportDriver.Common.queueMSIXVector, 2) == 1)
    }

    @Test("an enabled queue's layout can no longer be changed")
    func enabledQueueIsFrozen() {
        driver.negotiate()
        driver.configureQueue(0, queue)
        driver.enableQueue(0)
        #expect(driver.queueEnabled)
        #expect(errors.values.isEmpty)
        driver.write(TransportDriver.Common.queueSize, 8, 2)
        driver.writeAddress(TransportDriver.Common.queueDesc, 0x8_0000)
        driver.writeAddress(TransportDriver.Common.queueDevice, 0x9_0000)
        #expect(driver.read(TransportDriver.Common.queueSize, 2) == 16)
        #expect(driver.readAddress(TransportDriver.Common.queueDesc) == queue.descriptorTable)
        #expect(driver.readAddress(TransportDriver.Common.queueDevice) == queue.usedRing)
    }

    @Test("a selected queue that does not exist reads as absent and ignores writes")
    func missingQueue() {
        driver.selectQueue(3)
        #expect(driver.read(TransportDriver.Common.queueSize, 2) == 0)
        #expect(driver.read(TransportDriver.Common.queueMSIXVector, 2) == 0xFFFF)
        driver.write(TransportDriver.Common.queueSize, 16, 2)
        driver.writeAddress(TransportDriver.Common.queueDesc, 0x1000)
        driver.write(TransportDriver.Common.queueEnable, 1, 2)
        #expect(driver.read(TransportDriver.Common.queueSize, 2) == 0)
        #expect(driver.readAddress(TransportDriver.Common.queueDesc) == 0)
        #expect(!driver.queueEnabled)
        #expect(driver.status & VirtioStatus.needsReset == 0)
    }

    // MARK: - Serving requests

    @Test("after DRIVER_OK a notify fills the buffer with random bytes, records the length and fires the vector")
    mutating func rngRequest() throws {
        enableMSIX()
        driver.bringUp(queue, vector: 1)
        #expect(driver.status == 0x0F)
        let buffer = try queue.allocate(64)
        let head = try queue.offer([.writable(buffer, 64)])
        driver.notify(0)

        #expect(try queue.usedIndex == 1)
        #expect(try queue.used(0) == (UInt32(head), 64))
        #expect(try memory.read(at: buffer, count: 64) != [UInt8](repeating: 0, count: 64))
        #expect(signaler.messages.values == [MSIMessage(address: Self.msiAddress, data: 0x41)])
        #expect(errors.values.isEmpty)
    }

    @Test("interrupts decided on the device thread go out once, after its batch of events; elsewhere at once")
    mutating func batchedInterrupts() throws {
        enableMSIX()
        driver.bringUp(queue, vector: 1)
        let loop = try EventLoop(name: "vbatch\(getpid() % 10000)")
        try loop.start()
        defer { loop.stop() }
        try pci.batchInterrupts(on: loop)

        // Two requests completed in one handler on the loop's thread: one interrupt, after it.
        final class Guest: @unchecked Sendable {
            var driver: TransportDriver
            var queue: QueueDriver
            var sentDuringBatch = -1
            init(_ driver: TransportDriver, _ queue: QueueDriver) {
                self.driver = driver
                self.queue = queue
            }
        }
        let guest = Guest(driver, queue)
        let signaler = signaler
        try guest.queue.offer([.writable(try guest.queue.allocate(8), 8)])
        let work = try LoopSignal()
        let done = Atomic<Bool>(false)
        try loop.add(work) {
            guest.driver.notify(0)
            do { try guest.queue.offer([.writable(try guest.queue.allocate(8), 8)]) } catch {}
            guest.driver.notify(0)
            guest.sentDuringBatch = signaler.messages.values.count
            done.store(true, ordering: .sequentiallyConsistent)
        }
        work.raise()
        #expect(eventually { done.load(ordering: .sequentiallyConsistent) && signaler.messages.values.count == 1 })
        #expect(guest.sentDuringBatch == 0, "an interrupt went out before the batch was over")
        #expect(try guest.queue.usedIndex == 2)
        usleep(20_000)
        #expect(signaler.messages.values == [MSIMessage(address: Self.msiAddress, data: 0x41)])

        // Decided on another thread (a vCPU serving its own doorbell): sent at once.
        try guest.queue.offer([.writable(try guest.queue.allocate(8), 8)])
        guest.driver.notify(0)
        #expect(signaler.messages.values.count == 2)
    }

    @Test("random bytes are spread over several writable buffers and nothing beyond them")
    mutating func rngScatter() throws {
        driver.bringUp(queue)
        let a = try queue.allocate(16)
        let b = try queue.allocate(48)
        let guardBytes = try queue.allocate(16, fill: 0)
        try queue.offer([.writable(a, 16), .writable(b, 40)])
        driver.notify(0)
        #expect(try queue.used(0).length == 56)
        #expect(try memory.read(at: b + 40, count: 8) == [UInt8](repeating: 0, count: 8))
        #expect(try memory.read(at: guardBytes, count: 16) == [UInt8](repeating: 0, count: 16))
        #expect(try memory.read(at: a, count: 16) != [UInt8](repeating: 0, count: 16))
    }

    @Test("several pending requests are all served by one notify")
    mutating func batch() throws {
        driver.bringUp(queue)
        for length in [8, 16, 32] as [UInt32] { try queue.offer([.writable(try queue.allocate(Int(length)), length)]) }
        driver.notify(0)
        #expect(try queue.usedIndex == 3)
        #expect(try (0..<3).map { try queue.used($0).length } == [8, 16, 32])
    }

    @Test("without MSI-X the interrupt is reported in the ISR, which a read returns and clears")
    mutating func isr() throws {
        driver.bringUp(queue, vector: 1)
        #expect(driver.readISR() == 0)
        try queue.offer([.writable(try queue.allocate(8), 8)])
        driver.notify(0)
        #expect(signaler.messages.values.isEmpty)
        #expect(driver.readISR() == 1)
        #expect(driver.readISR() == 0)
    }

    @Test("a driver that suppresses interrupts gets its buffers back without one")
    mutating func suppressedInterrupt() throws {
        enableMSIX()
        driver.bringUp(queue, vector: 1)
        try queue.suppressInterrupts(true)
        try queue.offer([.writable(try queue.allocate(8), 8)])
        driver.notify(0)
        #expect(try queue.usedIndex == 1)
        #expect(signaler.messages.values.isEmpty)
        #expect(driver.readISR() == 0)
    }

    @Test("a masked queue vector is held pending in the PBA until unmasked")
    mutating func maskedVector() throws {
        enableMSIX()
        driver.write(TransportDriver.msixTable + 16 + 12, 1, 4)  // mask vector 1
        driver.bringUp(queue, vector: 1)
        try queue.offer([.writable(try queue.allocate(8), 8)])
        driver.notify(0)
        #expect(signaler.messages.values.isEmpty)
        #expect(driver.read(TransportDriver.msixPBA, 8) == 0b10)
        #expect(driver.read(TransportDriver.msixTable + 16 + 8, 4) == 0x41)
        driver.write(TransportDriver.msixTable + 16 + 12, 0, 4)
        #expect(signaler.messages.values == [MSIMessage(address: Self.msiAddress, data: 0x41)])
        #expect(driver.read(TransportDriver.msixPBA, 8) == 0)
    }

    @Test("status shows each queue's position, the ring's event indexes, and a vector held masked and pending")
    mutating func queueStatus() throws {
        enableMSIX()
        driver.write(TransportDriver.msixTable + 16 + 12, 1, 4)  // mask vector 1
        driver.bringUp(queue, vector: 1)
        try queue.offer([.writable(try queue.allocate(8), 8)])
        try queue.offer([.writable(try queue.allocate(8), 8)])
        try memory.store(UInt16(5), at: queue.availableRing + 4 + 2 * 16)  // used_event
        try memory.store(UInt16(9), at: queue.usedRing + 4 + 8 * 16)  // avail_event
        driver.notify(0)
        let status = try #require(pci.queueStatus.first)
        #expect(status.ready && status.size == 16)
        #expect(status.nextAvailable == 2 && status.nextUsed == 2 && status.availableIndex == 2)
        #expect(status.usedEvent == 5 && status.availableEvent == 9)
        #expect(status.vector == 1 && status.vectorMasked && status.vectorPending)
        // Without event indexes every notify that used buffers wants an interrupt.
        #expect(status.signalledUsed == 2 && status.interrupts == 1)
        #expect(status.json.contains(#""used_event":5,"avail_event":9,"vector":1,"vector_masked":true"#))
        driver.write(TransportDriver.msixTable + 16 + 12, 0, 4)
        let unmasked = try #require(pci.queueStatus.first)
        #expect(!unmasked.vectorMasked && !unmasked.vectorPending)
    }

    @Test("notifies are ignored before DRIVER_OK, for disabled queues and for queues that do not exist")
    mutating func ignoredNotifies() throws {
        try queue.offer([.writable(try queue.allocate(8), 8)])
        driver.negotiate()
        driver.configureQueue(0, queue)
        driver.enableQueue(0)
        driver.notify(0)
        #expect(try queue.usedIndex == 0)
        driver.write(TransportDriver.notify + 4, 1, 2)  // queue 1: outside the notify region
        pci.notify(queue: 1)
        pci.notify(queue: -1)
        #expect(try queue.usedIndex == 0)
        driver.driverOK()
        driver.notify(0)
        #expect(try queue.usedIndex == 1)
        #expect(errors.values.isEmpty)
    }

    @Test("a queue not enabled by the driver is not served even after DRIVER_OK")
    mutating func disabledQueue() throws {
        try queue.offer([.writable(try queue.allocate(8), 8)])
        driver.negotiate()
        driver.configureQueue(0, queue)
        driver.driverOK()
        driver.notify(0)
        #expect(try queue.usedIndex == 0)
    }

    // MARK: - Broken drivers

    @Test(
        "enabling a queue whose rings are unusable sets NEEDS_RESET and reports the error",
        arguments: [
            (UInt64(0x10_0000), UInt64(0x2000), UInt64(0x3000), UInt16(16)),  // descriptors outside RAM
            (0x1000, 0xF_FFF0, 0x3000, 16),  // available ring runs off the end
            (0x1000, 0x2000, 0x4000_0000_0000, 16),  // used ring far away
            (0x1008, 0x2000, 0x3000, 16),  // misaligned descriptor table
            (0x1000, 0x2000, 0x3000, 0),  // size 0
            (0x1000, 0x2000, 0x3000, 24),  // size not a power of two
            (0x1000, 0x2000, 0x3000, 512),  // size above the maximum
        ] as [(UInt64, UInt64, UInt64, UInt16)])
    func badQueueLayout(descriptors: UInt64, available: UInt64, used: UInt64, size: UInt16) {
        enableMSIX()
        driver.negotiate()
        driver.write(TransportDriver.Common.msixConfig, 0, 2)
        #expect(driver.read(TransportDriver.Common.msixConfig, 2) == 0)
        driver.selectQueue(0)
        driver.write(TransportDriver.Common.queueSize, UInt64(size), 2)
        driver.writeAddress(TransportDriver.Common.queueDesc, descriptors)
        driver.writeAddress(TransportDriver.Common.queueDriver, available)
        driver.writeAddress(TransportDriver.Common.queueDevice, used)
        let generation = driver.read(TransportDriver.Common.configGeneration, 1)
        driver.enableQueue(0)

        #expect(driver.status & VirtioStatus.needsReset != 0)
        #expect(!driver.queueEnabled)
        #expect(errors.values.count == 1)
        #expect(errors.values.first?.contains("queue 0") == true)
        #expect(errors.values.first?.contains("needs reset") == true)
        #expect(driver.read(TransportDriver.Common.configGeneration, 1) == (generation + 1) & 0xFF)
        // The configuration-change interrupt tells the driver.
        #expect(signaler.messages.values == [MSIMessage(address: Self.msiAddress, data: 0x40)])
        #expect(driver.readISR() & 2 != 0)
    }

    @Test("a malicious chain during notify sets NEEDS_RESET, and later notifies are ignored")
    mutating func maliciousChain() throws {
        enableMSIX()
        driver.bringUp(queue, vector: 1, configVector: 0)
        // A two-descriptor loop.
        try queue.setDescriptor(
            0, address: 0x4_0000, length: 8, flags: QueueDriver.flagNext | QueueDriver.flagWrite, next: 1)
        try queue.setDescriptor(
            1, address: 0x4_0000, length: 8, flags: QueueDriver.flagNext | QueueDriver.flagWrite, next: 0)
        try queue.publish(0)
        driver.notify(0)

        #expect(driver.status & VirtioStatus.needsReset != 0)
        #expect(errors.values.count == 1)
        #expect(errors.values.first?.contains("virtio-4") == true)
        #expect(errors.values.first?.contains("queue 0") == true)
        #expect(try queue.usedIndex == 0)
        #expect(signaler.messages.values == [MSIMessage(address: Self.msiAddress, data: 0x40)])

        // A well-formed request afterwards is not served, and no further errors are reported.
        try queue.offer([.writable(try queue.allocate(8), 8)])
        driver.notify(0)
        #expect(try queue.usedIndex == 0)
        #expect(errors.values.count == 1)
        // The driver cannot clear NEEDS_RESET except by resetting.
        driver.driverOK()
        #expect(driver.status & VirtioStatus.needsReset != 0)
        driver.notify(0)
        #expect(try queue.usedIndex == 0)
    }

    @Test(
        "each kind of malicious chain breaks the device instead of the VMM",
        arguments: [
            (UInt64(0x20_0000), UInt32(8), QueueDriver.flagWrite),  // outside RAM
            (0xF_FFFC, 8, QueueDriver.flagWrite),  // crosses the end of RAM
            (0, UInt32.max, QueueDriver.flagWrite),  // absurd length
            (0x4_0000, 16, QueueDriver.flagIndirect),  // indirect
            (0x4_0000, 16, QueueDriver.flagNext),  // next = 16, beyond the queue
        ] as [(UInt64, UInt32, UInt16)])
    mutating func maliciousChains(address: UInt64, length: UInt32, flags: UInt16) throws {
        driver.bringUp(queue)
        try queue.setDescriptor(0, address: address, length: length, flags: flags, next: 16)
        try queue.publish(0)
        driver.notify(0)
        #expect(driver.status & VirtioStatus.needsReset != 0)
        #expect(errors.values.count == 1)
        #expect(try queue.usedIndex == 0)
    }

    @Test("an available index that jumps ahead breaks the device")
    mutating func availableIndexJump() throws {
        driver.bringUp(queue)
        try queue.setAvailableIndex(1000)
        driver.notify(0)
        #expect(driver.status & VirtioStatus.needsReset != 0)
        #expect(errors.values.first?.contains("1000") == true)
    }

    // MARK: - Reset

    @Test("writing 0 to device_status resets status, features, queues and the ISR")
    mutating func reset() throws {
        enableMSIX()
        driver.bringUp(queue, vector: 1, configVector: 0)
        #expect(driver.read(TransportDriver.Common.msixConfig, 2) == 0)
        try queue.offer([.writable(try queue.allocate(8), 8)])
        driver.notify(0)
        #expect(try queue.usedIndex == 1)

        driver.setStatus(0)
        #expect(driver.status == 0)
        #expect(driver.driverFeatures() == 0)
        #expect(driver.read(TransportDriver.Common.msixConfig, 2) == 0xFFFF)
        #expect(driver.read(TransportDriver.Common.queueSelect, 2) == 0)
        #expect(!driver.queueEnabled)
        #expect(driver.read(TransportDriver.Common.queueSize, 2) == 256)
        #expect(driver.read(TransportDriver.Common.queueMSIXVector, 2) == 0xFFFF)
        #expect(driver.readAddress(TransportDriver.Common.queueDesc) == 0)
        #expect(driver.readAddress(TransportDriver.Common.queueDriver) == 0)
        #expect(driver.readAddress(TransportDriver.Common.queueDevice) == 0)
        #expect(driver.readISR() == 0)

        // A request made while the device is reset is not served.
        try queue.offer([.writable(try queue.allocate(8), 8)])
        driver.notify(0)
        #expect(try queue.usedIndex == 1)
    }

    @Test("reset clears NEEDS_RESET and the device serves fresh rings again")
    mutating func recoverAfterReset() throws {
        driver.bringUp(queue)
        try queue.setDescriptor(0, address: 0x4_0000, length: 8, flags: QueueDriver.flagIndirect, next: 0)
        try queue.publish(0)
        driver.notify(0)
        #expect(driver.status & VirtioStatus.needsReset != 0)

        driver.setStatus(0)
        #expect(driver.status == 0)
        var fresh = try QueueDriver(memory: memory, size: 8, base: 0x2_0000, dataBase: 0x6_0000)
        driver.bringUp(fresh)
        #expect(driver.status == 0x0F)
        try fresh.offer([.writable(try fresh.allocate(32), 32)])
        driver.notify(0)
        #expect(try fresh.usedIndex == 1)
        #expect(try fresh.used(0) == (0, 32))
        #expect(errors.values.count == 1)
    }

    // MARK: - Odd accesses

    @Test("unused BAR offsets read as zero and ignore writes")
    func unusedOffsets() {
        for offset in [0x40, 0x800, 0x1001, 0x3100, 0x5000, 0x7FFC] {
            #expect(driver.read(offset, 4) == 0)
            driver.write(offset, 0xFFFF_FFFF, 4)
        }
        #expect(driver.status == 0)
        #expect(driver.read(TransportDriver.deviceConfig, 4) == 0)  // virtio-rng has no config
    }

    @Test("common-config registers accessed with the wrong width are ignored")
    func wrongWidth() {
        driver.write(TransportDriver.Common.deviceStatus, 0x0F, 4)
        #expect(driver.status == 0)
        #expect(driver.read(TransportDriver.Common.queueSize, 4) == 0)
        #expect(driver.read(TransportDriver.Common.numQueues, 1) == 0)
    }
}

@Suite("virtio-pci on the PCI bus")
struct VirtioPCIOnBusTests {
    @Test("BAR 0 appears on the MMIO bus when the guest enables memory decoding, and serves the common config")
    func mappedThroughBus() throws {
        let memory = try makeMemory()
        let mmio = IOBus(name: "mmio")
        let bus = PCIBus(mmio: mmio)
        let pci = VirtioPCIDevice(
            device: VirtioRNG(), memory: memory, barAddress: 0xFE00_0000, signaler: RecordingSignaler(),
            onError: { _ in })
        try bus.attach(pci, slot: 1)
        let ports = bus.configPortDevice

        func select(_ register: UInt32) {
            withUnsafeBytes(of: (0x8000_0800 | register).littleEndian) { ports.write(offset: 0, data: $0) }
        }
        select(0x00)
        var id: UInt32 = 0
        withUnsafeMutableBytes(of: &id) { ports.read(offset: 4, data: $0) }
        #expect(id == 0x1044_1AF4)

        #expect(mmio.lookup(0xFE00_0012) == nil)
        select(0x04)
        withUnsafeBytes(of: UInt16(0x0006).littleEndian) { ports.write(offset: 4, data: $0) }
        #expect(mmio.lookup(0xFE00_0012)?.length == 0x8000)

        var numQueues: UInt16 = 0
        #expect(withUnsafeMutableBytes(of: &numQueues) { mmio.read(0xFE00_0012, data: $0) })
        #expect(numQueues == 1)
        var status: UInt8 = 1
        #expect(withUnsafeBytes(of: &status) { mmio.write(0xFE00_0014, data: $0) })
        status = 0
        withUnsafeMutableBytes(of: &status) { _ = mmio.read(0xFE00_0014, data: $0) }
        #expect(status == 1)
    }
}
