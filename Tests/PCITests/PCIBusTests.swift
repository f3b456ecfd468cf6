import Devices
import Testing

@testable import PCI

@Suite("PCI bus")
struct PCIBusTests {
    let mmio = IOBus(name: "mmio")
    let bus: PCIBus
    let cfg: ConfigMechanism1

    init() throws {
        bus = PCIBus(mmio: mmio)
        cfg = ConfigMechanism1(bus)
        try bus.attach(PCIHostBridge(), slot: 0)
    }

    @Test("the host bridge at 00:00.0 is an Intel 440FX")
    func hostBridge() {
        #expect(cfg.read(slot: 0, register: 0x00) == 0x1237_8086)
        #expect(cfg.read(slot: 0, register: 0x00, count: 2) == 0x8086)
        #expect(cfg.read(slot: 0, register: 0x02, count: 2) == 0x1237)
        #expect(cfg.read(slot: 0, register: 0x08) >> 8 == 0x06_0000)
        #expect(cfg.read(slot: 0, register: 0x0B, count: 1) == 0x06)
        #expect(cfg.read(slot: 0, register: 0x0E, count: 1) == 0x00)
        #expect(cfg.read(slot: 0, register: 0x10) == 0)  // no BARs
    }

    @Test("the address register reads back what the guest wrote")
    func addressRegister() {
        for value: UInt32 in [0x8000_0000, 0x8000_F8FC, 0x0000_1234, 0xFFFF_FFFF] {
            cfg.select(value)
            #expect(cfg.ports.read(0, count: 4) == UInt64(value))
        }
    }

    @Test(
        "empty slots, other buses, other functions and a disabled address read all ones",
        arguments: [
            ConfigMechanism1.address(slot: 5, register: 0),
            ConfigMechanism1.address(slot: 31, register: 0),
            ConfigMechanism1.address(bus: 1, slot: 0, register: 0),
            ConfigMechanism1.address(bus: 0xFF, slot: 0, register: 0),
            ConfigMechanism1.address(slot: 0, function: 1, register: 0),
            ConfigMechanism1.address(slot: 0, function: 7, register: 0),
            ConfigMechanism1.address(slot: 0, register: 0, enable: false),
        ])
    func allOnes(address: UInt32) {
        cfg.select(address)
        #expect(cfg.readData(count: 4) == 0xFFFF_FFFF)
        #expect(cfg.readData(count: 2) == 0xFFFF)
        #expect(cfg.readData(count: 1) == 0xFF)
        #expect(cfg.ports.read(6, count: 2) == 0xFFFF)
        #expect(cfg.ports.read(7, count: 1) == 0xFF)
    }

    @Test("writes to a function that is not selected do not reach the device")
    func writesNeedSelection() throws {
        let device = FakePCIDevice(bar0: 0xE000_0000, bar2: 0xE000_2000)
        try bus.attach(device, slot: 3)
        for address in [
            ConfigMechanism1.address(slot: 3, register: 0x3C, enable: false),
            ConfigMechanism1.address(slot: 3, function: 2, register: 0x3C),
            ConfigMechanism1.address(bus: 2, slot: 3, register: 0x3C),
        ] {
            cfg.select(address)
            cfg.ports.write(4, 0x0B, count: 1)
        }
        #expect(cfg.read(slot: 3, register: 0x3C, count: 1) == 0)
        cfg.write(slot: 3, register: 0x3C, 0x0B, count: 1)
        #expect(cfg.read(slot: 3, register: 0x3C, count: 1) == 0x0B)
    }

    @Test("byte and word accesses reach the register at 0xCFC plus the low address bits")
    func subDwordAccess() throws {
        let device = FakePCIDevice(bar0: 0xE000_0000, bar2: 0xE000_2000)
        try bus.attach(device, slot: 3)
        #expect(cfg.read(slot: 3, register: 0x02, count: 2) == 0x5678)
        #expect(cfg.read(slot: 3, register: 0x01, count: 1) == 0x12)
        #expect(cfg.read(slot: 3, register: 0x03, count: 1) == 0x56)
        cfg.write(slot: 3, register: 0x04, 0x0006, count: 2)
        #expect(device.config.withLock { $0.command } == 0x0006)
        // Accesses that run past the data window, or to the address register with a non-dword
        // size, do nothing and read all ones.
        cfg.select(ConfigMechanism1.address(slot: 3, register: 0))
        #expect(cfg.ports.read(6, count: 4) == 0xFFFF_FFFF)
        #expect(cfg.ports.read(0, count: 2) == 0xFFFF)
        cfg.ports.write(1, 0, count: 1)
        #expect(cfg.ports.read(0, count: 4) == UInt64(ConfigMechanism1.address(slot: 3, register: 0)))
    }

    @Test("attaching to a slot outside 0...31 or to a used slot fails")
    func attachErrors() throws {
        #expect(throws: PCIError.noSuchSlot(32)) { try bus.attach(PCIHostBridge(), slot: 32) }
        #expect(throws: PCIError.noSuchSlot(-1)) { try bus.attach(PCIHostBridge(), slot: -1) }
        #expect(throws: PCIError.slotInUse(0)) { try bus.attach(PCIHostBridge(), slot: 0) }
        try bus.attach(PCIHostBridge(), slot: 31)
        #expect(throws: PCIError.slotInUse(31)) { try bus.attach(PCIHostBridge(), slot: 31) }
        #expect(PCIError.noSuchSlot(32).description.contains("32"))
        #expect(PCIError.slotInUse(31).description.contains("31"))
    }

    @Test("BAR windows appear on the MMIO bus only while memory decoding is on")
    func barWindowsFollowMemoryEnable() throws {
        let device = FakePCIDevice(bar0: 0xE000_0000, bar0Size: 0x1000, bar2: 0xE000_2000, bar2Size: 0x100)
        try bus.attach(device, slot: 3)
        #expect(mmio.lookup(0xE000_0000) == nil)
        #expect(mmio.lookup(0xE000_2000) == nil)

        cfg.write(slot: 3, register: 0x04, UInt32(PCIConfigSpace.commandMemoryEnable), count: 2)
        #expect(mmio.lookup(0xE000_0000)?.length == 0x1000)
        #expect(mmio.lookup(0xE000_2000)?.length == 0x100)
        #expect(mmio.lookup(0xE000_1000) == nil)
        #expect(mmio.lookup(0xE000_2100) == nil)

        #expect(mmio.read(0xE000_0010, count: 4) == 0xB0B0_B0B0)
        #expect(mmio.read(0xE000_20FF, count: 1) == 0xB2)
        #expect(mmio.write(0xE000_0FF8, 0x1122_3344_5566_7788, count: 8))
        #expect(
            device.reads == [
                .init(bar: 0, offset: 0x10, count: 4, value: 0), .init(bar: 2, offset: 0xFF, count: 1, value: 0),
            ])
        #expect(device.writes == [.init(bar: 0, offset: 0xFF8, count: 8, value: 0x1122_3344_5566_7788)])

        // Turning decoding off removes both windows; other command bits keep it off.
        cfg.write(slot: 3, register: 0x04, UInt32(PCIConfigSpace.commandBusMaster), count: 2)
        #expect(mmio.lookup(0xE000_0000) == nil)
        #expect(mmio.lookup(0xE000_2000) == nil)
        #expect(mmio.read(0xE000_0010, count: 4) == nil)

        // And back on again.
        cfg.write(slot: 3, register: 0x04, 0x0006, count: 2)
        #expect(mmio.lookup(0xE000_0000) != nil)
        #expect(mmio.lookup(0xE000_2000) != nil)
    }

    @Test("a device whose memory decoding is already on is mapped when attached")
    func mappedAtAttach() throws {
        let device = FakePCIDevice(bar0: 0xE000_0000, bar2: 0xE000_2000)
        device.writeConfig(offset: 0x04, count: 2, value: 0x2)
        try bus.attach(device, slot: 7)
        #expect(mmio.lookup(0xE000_0000) != nil)
        #expect(mmio.lookup(0xE000_2000) != nil)
    }

    @Test("BAR windows move when the guest reprograms the BAR")
    func barWindowsMove() throws {
        let device = FakePCIDevice(bar0: 0xE000_0000, bar0Size: 0x1000, bar2: 0xE000_2000, bar2Size: 0x100)
        try bus.attach(device, slot: 3)
        cfg.write(slot: 3, register: 0x04, 0x0002, count: 2)

        // 64-bit BAR 0: low dword, then high dword.
        cfg.write(slot: 3, register: 0x10, 0xF000_0000)
        #expect(mmio.lookup(0xE000_0000) == nil)
        #expect(mmio.lookup(0xF000_0000)?.base == 0xF000_0000)
        cfg.write(slot: 3, register: 0x14, 0x0000_0001)
        #expect(mmio.lookup(0xF000_0000) == nil)
        #expect(mmio.lookup(0x1_F000_0800)?.base == 0x1_F000_0000)
        #expect(mmio.read(0x1_F000_0800, count: 2) == 0xB0B0)
        #expect(device.reads.last == .init(bar: 0, offset: 0x800, count: 2, value: 0))

        // 32-bit BAR 2; BAR 0 stays where it is.
        cfg.write(slot: 3, register: 0x18, 0xE800_0000)
        #expect(mmio.lookup(0xE000_2000) == nil)
        #expect(mmio.lookup(0xE800_0080)?.base == 0xE800_0000)
        #expect(mmio.lookup(0x1_F000_0000) != nil)
        #expect(cfg.read(slot: 3, register: 0x18) == 0xE800_0000)
        #expect(device.barState.bars[2]?.address == 0xE800_0000)
    }

    @Test("the guest's sizing probe with decoding off leaves no stray window behind")
    func sizingProbe() throws {
        let device = FakePCIDevice(bar0: 0xE000_0000, bar0Size: 0x1000, bar2: 0xE000_2000, bar2Size: 0x100)
        try bus.attach(device, slot: 3)
        // Linux: save, write all ones, read the mask, restore, for each BAR.
        for register in [0x10, 0x14, 0x18] {
            let saved = cfg.read(slot: 3, register: register)
            cfg.write(slot: 3, register: register, 0xFFFF_FFFF)
            let mask = cfg.read(slot: 3, register: register)
            cfg.write(slot: 3, register: register, saved)
            switch register {
            case 0x10: #expect(mask == 0xFFFF_F004)
            case 0x14: #expect(mask == 0xFFFF_FFFF)
            default: #expect(mask == 0xFFFF_FF00)
            }
        }
        #expect(mmio.lookup(0xFFFF_F000) == nil)
        cfg.write(slot: 3, register: 0x04, 0x0002, count: 2)
        #expect(mmio.lookup(0xE000_0000) != nil)
        #expect(mmio.lookup(0xE000_2000) != nil)
        #expect(mmio.lookup(0xFFFF_FF00) == nil)
    }

    @Test("attaching a device whose BAR overlaps a live window reports the conflict")
    func barConflict() throws {
        let first = FakePCIDevice(bar0: 0xE000_0000, bar2: 0xE000_2000)
        first.writeConfig(offset: 0x04, count: 2, value: 0x2)
        try bus.attach(first, slot: 3)
        let second = FakePCIDevice(bar0: 0xE000_0000, bar2: 0xE100_0000)
        second.writeConfig(offset: 0x04, count: 2, value: 0x2)
        #expect(throws: PCIError.barConflict(slot: 4, bar: 0, address: 0xE000_0000)) {
            try bus.attach(second, slot: 4)
        }
        // The first device's window is untouched.
        #expect(mmio.read(0xE000_0000, count: 1) == 0xB0)
        #expect(second.reads.isEmpty)
    }
}
