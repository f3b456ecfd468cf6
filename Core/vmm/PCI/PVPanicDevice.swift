import Devices
import Synchronization

/// The pvpanic PCI device (QEMU's `pvpanic-pci`, 1b36:0011): the guest kernel's panic notifier
/// (Linux driver `pvpanic-pci`) writes an event byte to BAR 0, so the VMM learns that the guest
/// crashed instead of seeing an ordinary reboot (`panic=-1`) or a silent hang.
public final class PVPanicDevice: PCIDevice {
    /// Event bits, read as the supported set and written on an event.
    public struct Events: OptionSet, Sendable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        /// The guest kernel panicked.
        public static let panicked = Events(rawValue: 1)
        /// The guest panicked and a crash kernel is loaded (kdump will run).
        public static let crashLoaded = Events(rawValue: 2)
    }

    static let vendorID: UInt16 = 0x1B36
    static let deviceID: UInt16 = 0x0011
    static let barSize: UInt64 = 0x1000

    private let config: Mutex<PCIConfigSpace>
    private let onEvent: @Sendable (Events) -> Void

    /// - Parameters:
    ///   - barAddress: where BAR 0 starts in guest-physical MMIO space.
    ///   - onEvent: called on the vCPU thread with each nonzero event the guest reports.
    public init(barAddress: UInt64, onEvent: @escaping @Sendable (Events) -> Void) {
        var config = PCIConfigSpace(
            vendor: Self.vendorID, device: Self.deviceID, classCode: 0x08_8000, revision: 1,
            subsystemVendor: 0x1AF4, subsystem: 0x1100)
        config.addBAR(0, .init(size: Self.barSize, is64Bit: false, address: barAddress))
        self.config = Mutex(config)
        self.onEvent = onEvent
    }

    public func readConfig(offset: Int, count: Int) -> UInt32 {
        config.withLock { $0.read(offset: offset, count: count) }
    }

    public func writeConfig(offset: Int, count: Int, value: UInt32) {
        config.withLock { _ = $0.write(offset: offset, count: count, value: value) }
    }

    public var barState: (bars: [Int: PCIConfigSpace.BAR], memoryEnabled: Bool) {
        config.withLock { ($0.bars, $0.memoryEnabled) }
    }

    /// Byte 0 lists the events this device can report; everything else reads as zero.
    public func readBAR(_ index: Int, offset: UInt64, data: UnsafeMutableRawBufferPointer) {
        let supported: Events = [.panicked, .crashLoaded]
        data.storeLittleEndian(offset == 0 ? UInt64(supported.rawValue) : 0)
    }

    public func writeBAR(_ index: Int, offset: UInt64, data: UnsafeRawBufferPointer) {
        guard offset == 0, let first = data.first else { return }
        let events = Events(rawValue: first).intersection([.panicked, .crashLoaded])
        if !events.isEmpty { onEvent(events) }
    }
}
