import Devices
import Synchronization

/// The VM's PCI root bus (bus 0): configuration mechanism #1 on ports 0xCF8-0xCFF, and the
/// MMIO windows of every device's BARs, kept in step with what the guest programs.
public final class PCIBus: Sendable {
    /// The 0xCF8 address register and 0xCFC data window, as one 8-port device.
    public static let configPort: UInt64 = 0xCF8
    public static let configPortLength: UInt64 = 8
    public static let maxDevices = 32

    private struct Mapping: Equatable {
        let slot: Int
        let bar: Int
        let address: UInt64
    }

    private let devices = Mutex<[Int: any PCIDevice]>([:])
    private let address = Mutex<UInt32>(0)
    private let mappings = Mutex<[Mapping]>([])
    private let mmio: IOBus

    /// - Parameter mmio: the bus on which BAR windows are registered.
    public init(mmio: IOBus) {
        self.mmio = mmio
    }

    /// Puts `device` in `slot` (0...31) and maps its BARs as they are now.
    public func attach(_ device: any PCIDevice, slot: Int) throws(PCIError) {
        guard (0..<Self.maxDevices).contains(slot) else { throw .noSuchSlot(slot) }
        try devices.withLock { (devices: inout [Int: any PCIDevice]) throws(PCIError) in
            guard devices[slot] == nil else { throw .slotInUse(slot) }
            devices[slot] = device
        }
        try updateMappings(slot: slot, device: device)
    }

    /// The config-port device to register on the PIO bus at ``configPort``.
    public var configPortDevice: any BusDevice { ConfigPorts(bus: self) }

    // MARK: - Configuration mechanism #1

    func readData(portOffset: Int, count: Int) -> UInt32 {
        guard let target = selected(portOffset: portOffset) else { return UInt32.max >> (32 - 8 * count) }
        return target.device.readConfig(offset: target.register, count: count)
    }

    func writeData(portOffset: Int, count: Int, value: UInt32) {
        guard let target = selected(portOffset: portOffset) else { return }
        target.device.writeConfig(offset: target.register, count: count, value: value)
        // BAR moves and memory-enable changes both show up here; remap when anything differs.
        if target.register < 0x28 { try? updateMappings(slot: target.slot, device: target.device) }
    }

    /// What an access to 0xCFC + `portOffset - 4` reaches, decoded from one snapshot of the
    /// address register: bus 0, function 0 only.
    private func selected(portOffset: Int) -> (device: any PCIDevice, slot: Int, register: Int)? {
        let value = address.withLock { $0 }
        guard value & 0x8000_0000 != 0, (value >> 16) & 0xFF == 0, (value >> 8) & 0x7 == 0 else { return nil }
        let slot = Int((value >> 11) & 0x1F)
        guard let device = devices.withLock({ $0[slot] }) else { return nil }
        return (device, slot, Int(value & 0xFC) + (portOffset - 4))
    }

    func writeAddress(_ value: UInt32) { address.withLock { $0 = value } }
    func readAddress() -> UInt32 { address.withLock { $0 } }

    // MARK: - BAR windows

    private func updateMappings(slot: Int, device: any PCIDevice) throws(PCIError) {
        let (bars, enabled) = device.barState
        let wanted = enabled ? bars.map { Mapping(slot: slot, bar: $0.key, address: $0.value.address) } : []
        // The device hears of each change after the bus changed, in order, under the lock.
        try mappings.withLock { (mappings: inout [Mapping]) throws(PCIError) in
            for stale in mappings where stale.slot == slot && !wanted.contains(stale) {
                mmio.remove(base: stale.address)
                device.barMapped(stale.bar, at: nil)
            }
            mappings.removeAll { $0.slot == slot && !wanted.contains($0) }
            for mapping in wanted where !mappings.contains(mapping) {
                guard let size = bars[mapping.bar]?.size, mapping.address != 0 else { continue }
                do {
                    try mmio.insert(BARWindow(device: device, bar: mapping.bar), base: mapping.address, length: size)
                } catch {
                    throw .barConflict(slot: slot, bar: mapping.bar, address: mapping.address)
                }
                mappings.append(mapping)
                device.barMapped(mapping.bar, at: mapping.address)
            }
        }
    }
}

/// Ports 0xCF8-0xCFF: the address register (dword at 0) and the data window (4...7).
struct ConfigPorts: BusDevice {
    let bus: PCIBus

    func read(offset: UInt64, data: UnsafeMutableRawBufferPointer) {
        if offset == 0 && data.count == 4 {
            data.storeLittleEndian(UInt64(bus.readAddress()))
        } else if offset >= 4 && Int(offset) + data.count <= 8 {
            data.storeLittleEndian(UInt64(bus.readData(portOffset: Int(offset), count: data.count)))
        } else {
            data.storeLittleEndian(UInt64.max)
        }
    }

    func write(offset: UInt64, data: UnsafeRawBufferPointer) {
        if offset == 0 && data.count == 4 {
            bus.writeAddress(UInt32(truncatingIfNeeded: data.littleEndianValue))
        } else if offset >= 4 && Int(offset) + data.count <= 8 {
            bus.writeData(
                portOffset: Int(offset), count: data.count, value: UInt32(truncatingIfNeeded: data.littleEndianValue))
        }
    }
}

/// Forwards MMIO inside one BAR to its device.
struct BARWindow: BusDevice {
    let device: any PCIDevice
    let bar: Int

    func read(offset: UInt64, data: UnsafeMutableRawBufferPointer) { device.readBAR(bar, offset: offset, data: data) }
    func write(offset: UInt64, data: UnsafeRawBufferPointer) { device.writeBAR(bar, offset: offset, data: data) }
}

/// Why a PCI device could not be attached or mapped.
public enum PCIError: Error, Equatable, CustomStringConvertible {
    case noSuchSlot(Int)
    case slotInUse(Int)
    case barConflict(slot: Int, bar: Int, address: UInt64)

    public var description: String {
        switch self {
        case .noSuchSlot(let slot): return "PCI slot \(slot) does not exist (0...31)"
        case .slotInUse(let slot): return "PCI slot \(slot) is already in use"
        case .barConflict(let slot, let bar, let address):
            return "BAR \(bar) of PCI slot \(slot) at 0x\(String(address, radix: 16)) overlaps another device"
        }
    }
}
