import Synchronization

/// Device 00:00.0: the host bridge Linux looks for before it trusts configuration mechanism #1
/// (an Intel 440FX identity, as QEMU and crosvm present).
public final class PCIHostBridge: PCIDevice {
    private let config = Mutex(PCIConfigSpace(vendor: 0x8086, device: 0x1237, classCode: 0x06_0000))

    public init() {}

    public func readConfig(offset: Int, count: Int) -> UInt32 {
        config.withLock { $0.read(offset: offset, count: count) }
    }

    public func writeConfig(offset: Int, count: Int, value: UInt32) {
        config.withLock { _ = $0.write(offset: offset, count: count, value: value) }
    }

    public var barState: (bars: [Int: PCIConfigSpace.BAR], memoryEnabled: Bool) { ([:], false) }

    public func readBAR(_ index: Int, offset: UInt64, data: UnsafeMutableRawBufferPointer) {}

    public func writeBAR(_ index: Int, offset: UInt64, data: UnsafeRawBufferPointer) {}
}
