import GuestMemory
import PCI
import VirtioDriver

@testable import Virtio

/// What a Linux virtio-pci driver does to a ``VirtioPCIDevice``: config-space accesses to find
/// and enable MSI-X, and MMIO accesses to BAR 0 for the common configuration, notifications,
/// the ISR and the MSI-X table.
struct TransportDriver {
    enum Common {
        static let deviceFeatureSelect = 0x00
        static let deviceFeature = 0x04
        static let driverFeatureSelect = 0x08
        static let driverFeature = 0x0C
        static let msixConfig = 0x10
        static let numQueues = 0x12
        static let deviceStatus = 0x14
        static let configGeneration = 0x15
        static let queueSelect = 0x16
        static let queueSize = 0x18
        static let queueMSIXVector = 0x1A
        static let queueEnable = 0x1C
        static let queueNotifyOff = 0x1E
        static let queueDesc = 0x20
        static let queueDriver = 0x28
        static let queueDevice = 0x30
    }

    static let isr = 0x1000
    static let deviceConfig = 0x2000
    static let notify = 0x3000
    static let notifyMultiplier = 4
    static let msixTable = 0x4000
    static let msixPBA = 0x6000

    let device: VirtioPCIDevice

    // MARK: - BAR 0

    func read(_ offset: Int, _ count: Int) -> UInt64 {
        var bytes = [UInt8](repeating: 0xA5, count: count)
        bytes.withUnsafeMutableBytes { device.readBAR(0, offset: UInt64(offset), data: $0) }
        return bytes.enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
    }

    func write(_ offset: Int, _ value: UInt64, _ count: Int) {
        let bytes = (0..<count).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
        bytes.withUnsafeBytes { device.writeBAR(0, offset: UInt64(offset), data: $0) }
    }

    var status: UInt8 { UInt8(read(Common.deviceStatus, 1)) }
    func setStatus(_ value: UInt8) { write(Common.deviceStatus, UInt64(value), 1) }

    /// Reads ISR status (which clears it).
    func readISR() -> UInt8 { UInt8(read(Self.isr, 1)) }

    /// Both 32-bit halves of device_feature.
    func deviceFeatures() -> UInt64 {
        write(Common.deviceFeatureSelect, 0, 4)
        let low = read(Common.deviceFeature, 4)
        write(Common.deviceFeatureSelect, 1, 4)
        let high = read(Common.deviceFeature, 4)
        return high << 32 | low
    }

    func setDriverFeatures(_ features: UInt64) {
        write(Common.driverFeatureSelect, 0, 4)
        write(Common.driverFeature, features & 0xFFFF_FFFF, 4)
        write(Common.driverFeatureSelect, 1, 4)
        write(Common.driverFeature, features >> 32, 4)
    }

    func driverFeatures() -> UInt64 {
        write(Common.driverFeatureSelect, 0, 4)
        let low = read(Common.driverFeature, 4)
        write(Common.driverFeatureSelect, 1, 4)
        let high = read(Common.driverFeature, 4)
        return high << 32 | low
    }

    /// ACKNOWLEDGE, DRIVER, the features, FEATURES_OK; returns whether FEATURES_OK stuck.
    @discardableResult
    func negotiate(_ features: UInt64 = VirtioFeature.version1) -> Bool {
        setStatus(0)
        setStatus(VirtioStatus.acknowledge)
        setStatus(VirtioStatus.acknowledge | VirtioStatus.driver)
        setDriverFeatures(features)
        setStatus(VirtioStatus.acknowledge | VirtioStatus.driver | VirtioStatus.featuresOK)
        return status & VirtioStatus.featuresOK != 0
    }

    func driverOK() {
        setStatus(VirtioStatus.acknowledge | VirtioStatus.driver | VirtioStatus.featuresOK | VirtioStatus.driverOK)
    }

    func selectQueue(_ index: UInt16) { write(Common.queueSelect, UInt64(index), 2) }

    /// Writes a 64-bit queue address as two 32-bit halves, low first (vp_iowrite64_twopart).
    func writeAddress(_ offset: Int, _ address: UInt64) {
        write(offset, address & 0xFFFF_FFFF, 4)
        write(offset + 4, address >> 32, 4)
    }

    func readAddress(_ offset: Int) -> UInt64 { read(offset + 4, 4) << 32 | read(offset, 4) }

    /// Programs queue `index` with `queue`'s rings and optional vector, without enabling it.
    func configureQueue(_ index: UInt16, _ queue: QueueDriver, vector: UInt16 = 0xFFFF) {
        selectQueue(index)
        write(Common.queueSize, UInt64(queue.size), 2)
        writeAddress(Common.queueDesc, queue.descriptorTable)
        writeAddress(Common.queueDriver, queue.availableRing)
        writeAddress(Common.queueDevice, queue.usedRing)
        write(Common.queueMSIXVector, UInt64(vector), 2)
    }

    func enableQueue(_ index: UInt16) {
        selectQueue(index)
        write(Common.queueEnable, 1, 2)
    }

    var queueEnabled: Bool { read(Common.queueEnable, 2) == 1 }

    /// Kicks queue `index` at its notification address.
    func notify(_ index: UInt16) {
        selectQueue(index)
        let offset = Int(read(Common.queueNotifyOff, 2)) * Self.notifyMultiplier
        write(Self.notify + offset, UInt64(index), 2)
    }

    /// The whole bring-up after a reset: features, the config vector, queue 0, DRIVER_OK.
    func bringUp(_ queue: QueueDriver, vector: UInt16 = 0xFFFF, configVector: UInt16 = 0xFFFF) {
        negotiate()
        write(Common.msixConfig, UInt64(configVector), 2)
        configureQueue(0, queue, vector: vector)
        enableQueue(0)
        driverOK()
    }

    // MARK: - Configuration space and MSI-X

    /// The capability list as (offset, id) pairs.
    func capabilities() -> [(offset: Int, id: UInt8)] {
        guard device.readConfig(offset: 0x06, count: 2) & 0x10 != 0 else { return [] }
        var list: [(Int, UInt8)] = []
        var pointer = Int(device.readConfig(offset: 0x34, count: 1))
        while pointer != 0 && list.count < 48 {
            list.append((pointer, UInt8(device.readConfig(offset: pointer, count: 1))))
            pointer = Int(device.readConfig(offset: pointer + 1, count: 1))
        }
        return list
    }

    var msixCapability: Int? { capabilities().first { $0.id == 0x11 }?.offset }

    /// Sets message control (enable = bit 15, function mask = bit 14) as a 16-bit config write.
    func setMSIXControl(enable: Bool, functionMask: Bool = false) {
        guard let cap = msixCapability else { return }
        let control = device.readConfig(offset: cap + 2, count: 2)
        let bits = (enable ? UInt32(0x8000) : 0) | (functionMask ? 0x4000 : 0)
        device.writeConfig(offset: cap + 2, count: 2, value: control & 0x3FFF | bits)
    }

    /// Writes MSI-X table entry `vector` and unmasks it.
    func programVector(_ vector: Int, address: UInt64, data: UInt32) {
        let base = Self.msixTable + 16 * vector
        write(base, address & 0xFFFF_FFFF, 4)
        write(base + 4, address >> 32, 4)
        write(base + 8, UInt64(data), 4)
        write(base + 12, 0, 4)
    }
}
