import Devices
import GuestMemory
import PCI
import Synchronization

/// The virtio 1.x PCI transport ("modern" only): a ``VirtioDevice`` presented as a PCI function
/// whose BAR 0 holds the common configuration, ISR, device configuration and notification
/// regions, and the MSI-X table and PBA.
public final class VirtioPCIDevice: PCIDevice {
    /// BAR 0 layout.
    enum Layout {
        static let common = 0x0000
        static let commonSize = 0x40
        static let isr = 0x1000
        static let device = 0x2000
        static let deviceSize = 0x1000
        static let notify = 0x3000
        static let notifyMultiplier = 4
        static let msixTable = 0x4000
        static let msixPBA = 0x6000
        static let barSize: UInt64 = 0x8000
    }

    static let vendorID: UInt16 = 0x1AF4
    static let capVendor: UInt8 = 0x09
    static let noVector: UInt16 = 0xFFFF

    struct State {
        var config: PCIConfigSpace
        var status: UInt8 = 0
        var deviceFeatureSelect: UInt32 = 0
        var driverFeatureSelect: UInt32 = 0
        var driverFeatures: UInt64 = 0
        var queueSelect: UInt16 = 0
        var queues: [Virtqueue]
        var configVector: UInt16 = noVector
        var isr: UInt8 = 0
        var configGeneration: UInt8 = 0
    }

    public let device: any VirtioDevice
    let memory: GuestMemory
    let msix: MSIXTable
    let msixCapability: Int
    let state: Mutex<State>
    private let onError: @Sendable (String) -> Void
    private let notifyObserver = Mutex<(@Sendable (UInt64?) -> Void)?>(nil)
    /// Interrupts decided on a device thread, sent once its batch of events is handled (see
    /// ``batchInterrupts(on:)``).
    let interruptBatch = Mutex<InterruptBatch?>(nil)

    /// Bytes between two queues' doorbells in the notification region.
    public static let notifyStride = Layout.notifyMultiplier
    /// Number of virtqueues (and doorbells).
    public var queueCount: Int { device.queueMaxSizes.count }

    /// - Parameters:
    ///   - barAddress: where BAR 0 starts in guest-physical MMIO space.
    ///   - onError: called with a description when the guest breaks a queue (the device then
    ///     reports NEEDS_RESET and stops serving until reset).
    public init(
        device: any VirtioDevice, memory: GuestMemory, barAddress: UInt64, signaler: any MSISignaler,
        onError: @escaping @Sendable (String) -> Void
    ) {
        self.device = device
        self.memory = memory
        self.onError = onError
        let queueCount = device.queueMaxSizes.count
        msix = MSIXTable(vectors: device.msixVectors, signaler: signaler)
        var config = PCIConfigSpace(
            vendor: Self.vendorID, device: 0x1040 + device.deviceType, classCode: device.pciClassCode, revision: 1,
            subsystemVendor: Self.vendorID, subsystem: 0x40)
        config.addBAR(0, .init(size: Layout.barSize, is64Bit: true, address: barAddress))
        msixCapability = config.addCapability(
            id: MSIXTable.capabilityID,
            body: msix.capabilityBody(bar: 0, tableOffset: UInt32(Layout.msixTable), pbaOffset: UInt32(Layout.msixPBA)),
            writable: [3: MSIXTable.controlHighByteWritable])
        func virtioCap(_ type: UInt8, offset: Int, length: Int, extra: [UInt8] = []) -> [UInt8] {
            let capLength = UInt8(16 + extra.count)
            return [capLength, type, 0, 0, 0, 0] + le32(offset) + le32(length) + extra
        }
        config.addCapability(id: Self.capVendor, body: virtioCap(1, offset: Layout.common, length: Layout.commonSize))
        config.addCapability(
            id: Self.capVendor,
            body: virtioCap(
                2, offset: Layout.notify, length: queueCount * Layout.notifyMultiplier,
                extra: le32(Layout.notifyMultiplier)))
        config.addCapability(id: Self.capVendor, body: virtioCap(3, offset: Layout.isr, length: 1))
        config.addCapability(id: Self.capVendor, body: virtioCap(4, offset: Layout.device, length: Layout.deviceSize))
        state = Mutex(State(config: config, queues: device.queueMaxSizes.map { Virtqueue(maxSize: $0) }))
    }

    var offeredFeatures: UInt64 { device.features | VirtioFeature.version1 | VirtioFeature.eventIndex }

    // MARK: - PCIDevice

    public func readConfig(offset: Int, count: Int) -> UInt32 {
        state.withLock { $0.config.read(offset: offset, count: count) }
    }

    public func writeConfig(offset: Int, count: Int, value: UInt32) {
        let control = state.withLock { state -> UInt16 in
            state.config.write(offset: offset, count: count, value: value)
            return UInt16(state.config.read(offset: msixCapability + 2, count: 2))
        }
        if offset <= msixCapability + 3 && offset + count > msixCapability + 2 { msix.updateControl(control) }
    }

    public var barState: (bars: [Int: PCIConfigSpace.BAR], memoryEnabled: Bool) {
        state.withLock { ($0.config.bars, $0.config.memoryEnabled) }
    }

    public func readBAR(_ index: Int, offset: UInt64, data: UnsafeMutableRawBufferPointer) {
        let offset = Int(offset)
        switch offset {
        case Layout.common..<(Layout.common + Layout.commonSize):
            data.storeLittleEndian(state.withLock { readCommon(&$0, offset: offset - Layout.common, size: data.count) })
        case Layout.isr:
            // Reading the ISR acknowledges it.
            data.storeLittleEndian(
                UInt64(
                    state.withLock { state in
                        defer { state.isr = 0 }
                        return state.isr
                    }))
        case Layout.device..<(Layout.device + Layout.deviceSize):
            state.withLock { _ in device.readConfig(offset: offset - Layout.device, data: data) }
        case Layout.msixTable..<(Layout.msixTable + msix.tableSize):
            msix.readTable(offset: offset - Layout.msixTable, data: data)
        case Layout.msixPBA..<(Layout.msixPBA + msix.pbaSize):
            msix.readPBA(offset: offset - Layout.msixPBA, data: data)
        default:
            data.storeLittleEndian(0)
        }
    }

    public func writeBAR(_ index: Int, offset: UInt64, data: UnsafeRawBufferPointer) {
        let offset = Int(offset)
        switch offset {
        case Layout.common..<(Layout.common + Layout.commonSize):
            let value = data.littleEndianValue
            let fire = state.withLock {
                writeCommon(&$0, offset: offset - Layout.common, size: data.count, value: value)
            }
            fire.forEach { msix.trigger($0) }
        case Layout.device..<(Layout.device + Layout.deviceSize):
            state.withLock { _ in device.writeConfig(offset: offset - Layout.device, data: data) }
        case Layout.notify..<(Layout.notify + Layout.notifyMultiplier * device.queueMaxSizes.count):
            notify(queue: (offset - Layout.notify) / Layout.notifyMultiplier)
        case Layout.msixTable..<(Layout.msixTable + msix.tableSize):
            msix.writeTable(offset: offset - Layout.msixTable, data: data)
        default:
            break
        }
    }

    public func barMapped(_ index: Int, at address: UInt64?) {
        guard index == 0, let observer = notifyObserver.withLock({ $0 }) else { return }
        observer(address.map { $0 + UInt64(Layout.notify) })
    }

    /// Registers the one observer told where queue 0's doorbell is whenever BAR 0 is mapped or
    /// unmapped (queue i's is ``notifyStride`` × i further), so that doorbell writes can reach
    /// ``notify(queue:)`` without a VM exit. Set it before the device is attached to the bus.
    public func observeNotifyRegion(_ observer: @escaping @Sendable (UInt64?) -> Void) {
        notifyObserver.withLock { $0 = observer }
    }

    // MARK: - Queues

    /// The guest kicked queue `index`: serve it and interrupt if the driver wants that.
    public func notify(queue index: Int) {
        let vector = state.withLock { state -> UInt16? in
            guard state.status & VirtioStatus.driverOK != 0, state.status & VirtioStatus.needsReset == 0,
                index < state.queues.count, state.queues[index].ready
            else { return nil }
            do {
                guard try device.process(queue: index, &state.queues[index], memory: memory),
                    state.queues[index].wantsInterrupt(memory: memory)
                else { return nil }
                state.isr |= 1
                return state.queues[index].msixVector
            } catch {
                return markBroken(&state, "queue \(index): \(error)")
            }
        }
        if let vector, vector != Self.noVector { interrupt(Int(vector)) }
    }

    /// Puts the device in NEEDS_RESET and returns the config-change vector to fire.
    private func markBroken(_ state: inout State, _ why: String) -> UInt16 {
        state.status |= VirtioStatus.needsReset
        state.configGeneration &+= 1
        state.isr |= 2
        onError("virtio-\(device.deviceType): \(why); device needs reset")
        return state.configVector
    }

    // MARK: - Common configuration (virtio 1.x, 4.1.4.3)

    private func readCommon(_ state: inout State, offset: Int, size: Int) -> UInt64 {
        let select = Int(state.queueSelect)
        let queue = select < state.queues.count ? state.queues[select] : nil
        switch (offset, size) {
        case (0x00, 4): return UInt64(state.deviceFeatureSelect)
        case (0x04, 4):
            return state.deviceFeatureSelect < 2
                ? (offeredFeatures >> (32 * UInt64(state.deviceFeatureSelect))) & 0xFFFF_FFFF : 0
        case (0x08, 4): return UInt64(state.driverFeatureSelect)
        case (0x0C, 4):
            return state.driverFeatureSelect < 2
                ? (state.driverFeatures >> (32 * UInt64(state.driverFeatureSelect))) & 0xFFFF_FFFF : 0
        case (0x10, 2): return UInt64(state.configVector)
        case (0x12, 2): return UInt64(state.queues.count)
        case (0x14, 1): return UInt64(state.status)
        case (0x15, 1): return UInt64(state.configGeneration)
        case (0x16, 2): return UInt64(state.queueSelect)
        case (0x18, 2): return UInt64(queue?.size ?? 0)
        case (0x1A, 2): return UInt64(queue?.msixVector ?? Self.noVector)
        case (0x1C, 2): return queue?.ready == true ? 1 : 0
        case (0x1E, 2): return UInt64(select)  // notify offset: queue index × multiplier
        case (0x20, 4): return (queue?.descriptorTable ?? 0) & 0xFFFF_FFFF
        case (0x24, 4): return (queue?.descriptorTable ?? 0) >> 32
        case (0x28, 4): return (queue?.availableRing ?? 0) & 0xFFFF_FFFF
        case (0x2C, 4): return (queue?.availableRing ?? 0) >> 32
        case (0x30, 4): return (queue?.usedRing ?? 0) & 0xFFFF_FFFF
        case (0x34, 4): return (queue?.usedRing ?? 0) >> 32
        default: return 0
        }
    }

    /// Applies a common-config write; returns MSI-X vectors to fire.
    private func writeCommon(_ state: inout State, offset: Int, size: Int, value: UInt64) -> [Int] {
        let select = Int(state.queueSelect)
        let hasQueue = select < state.queues.count
        // Queue layout may change only while the queue is off (4.1.4.3.2).
        let canEditQueue = hasQueue && !state.queues[select].ready
        func setLow(_ old: UInt64) -> UInt64 { (old & ~0xFFFF_FFFF) | (value & 0xFFFF_FFFF) }
        func setHigh(_ old: UInt64) -> UInt64 { (old & 0xFFFF_FFFF) | (value << 32) }
        switch (offset, size) {
        case (0x00, 4): state.deviceFeatureSelect = UInt32(truncatingIfNeeded: value)
        case (0x08, 4): state.driverFeatureSelect = UInt32(truncatingIfNeeded: value)
        case (0x0C, 4):
            guard state.status & VirtioStatus.featuresOK == 0, state.driverFeatureSelect < 2 else { break }
            let shift = 32 * UInt64(state.driverFeatureSelect)
            state.driverFeatures = (state.driverFeatures & ~(0xFFFF_FFFF << shift)) | ((value & 0xFFFF_FFFF) << shift)
        case (0x10, 2): state.configVector = mappableVector(value)
        case (0x14, 1): return writeStatus(&state, UInt8(truncatingIfNeeded: value))
        case (0x16, 2): state.queueSelect = UInt16(truncatingIfNeeded: value)
        case (0x18, 2) where canEditQueue: state.queues[select].size = UInt16(truncatingIfNeeded: value)
        case (0x1A, 2) where hasQueue: state.queues[select].msixVector = mappableVector(value)
        case (0x1C, 2) where canEditQueue && value == 1:
            do {
                try state.queues[select].validate(memory: memory)
                state.queues[select].eventIndex = state.driverFeatures & VirtioFeature.eventIndex != 0
                state.queues[select].ready = true
            } catch {
                return [Int(markBroken(&state, "queue \(select) enabled with \(error)"))].filter {
                    $0 != Int(Self.noVector)
                }
            }
        case (0x20, 4) where canEditQueue:
            state.queues[select].descriptorTable = setLow(state.queues[select].descriptorTable)
        case (0x24, 4) where canEditQueue:
            state.queues[select].descriptorTable = setHigh(state.queues[select].descriptorTable)
        case (0x28, 4) where canEditQueue:
            state.queues[select].availableRing = setLow(state.queues[select].availableRing)
        case (0x2C, 4) where canEditQueue:
            state.queues[select].availableRing = setHigh(state.queues[select].availableRing)
        case (0x30, 4) where canEditQueue: state.queues[select].usedRing = setLow(state.queues[select].usedRing)
        case (0x34, 4) where canEditQueue: state.queues[select].usedRing = setHigh(state.queues[select].usedRing)
        default: break
        }
        return []
    }

    /// A vector the driver asked for, or NO_VECTOR when the table has no such entry: the driver
    /// reads the field back to learn that the mapping failed (virtio 1.x, 4.1.5.1.2).
    private func mappableVector(_ value: UInt64) -> UInt16 {
        value < UInt64(msix.vectorCount) ? UInt16(value) : Self.noVector
    }

    private func writeStatus(_ state: inout State, _ value: UInt8) -> [Int] {
        if value == 0 {
            // Device reset: queues, features and interrupts back to power-on state.
            for i in state.queues.indices { state.queues[i].reset() }
            state.status = 0
            state.driverFeatures = 0
            state.deviceFeatureSelect = 0
            state.driverFeatureSelect = 0
            state.queueSelect = 0
            state.configVector = Self.noVector
            state.isr = 0
            device.reset()
            return []
        }
        var status = value
        // FEATURES_OK sticks only if the driver asked for nothing we did not offer, and for VERSION_1.
        if status & VirtioStatus.featuresOK != 0 && state.status & VirtioStatus.featuresOK == 0 {
            let acceptable =
                state.driverFeatures & ~offeredFeatures == 0 && state.driverFeatures & VirtioFeature.version1 != 0
            if acceptable {
                device.driverFeaturesAcked(state.driverFeatures)
            } else {
                status &= ~VirtioStatus.featuresOK
            }
        }
        state.status = status | (state.status & VirtioStatus.needsReset)
        return []
    }
}

func le32(_ value: Int) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }
