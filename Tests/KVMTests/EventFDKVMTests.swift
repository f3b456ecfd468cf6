import CKVM
import EventLoop
import Synchronization
import Testing

@testable import Devices
@testable import KVM

#if canImport(Glibc)
    import Glibc
#endif

/// ioeventfd and irqfd on the build machine's real /dev/kvm.
@Suite("KVM eventfds", .serialized)
struct EventFDKVMTests {
    /// mov rcx,0xfee01000; mov word [rcx+8],1: the guest's write to the doorbell at 0xfee01008.
    static let ringDoorbell: [UInt8] = [
        0x48, 0xB9, 0x00, 0x10, 0xE0, 0xFE, 0x00, 0x00, 0x00, 0x00,
        0x66, 0xC7, 0x41, 0x08, 0x01, 0x00,
    ]

    @Test("a guest write to an ioeventfd address signals the eventfd without an exit")
    func ioeventfdTakesTheWrite() throws {
        // The doorbell; mov word [rcx+0x10],2; hlt
        let code = Self.ringDoorbell + [0x66, 0xC7, 0x41, 0x10, 0x02, 0x00, 0xF4]
        let guest = try TinyGuest(code: code, longMode: true)
        let device = EchoDevice(answer: 0)
        try guest.mmio.insert(device, base: 0xFEE0_1000, length: 0x100)
        let doorbell = try EventFD()
        let anyLength: UInt32 = guest.kvm.checkExtension(.ioeventfdAnyLength) > 0 ? 0 : 2
        try guest.vm.registerIOEventFD(eventfd: doorbell.fd, address: 0xFEE0_1008, length: anyLength, isPIO: false)
        let exits = try guest.runToHalt()
        #expect(doorbell.drain() == 1)
        #expect(exits.mmio == 1)
        #expect(device.writes.withLock { $0.map(\.offset) } == [0x10])
    }

    @Test("an ioeventfd watched edge-triggered and never read reports every guest write")
    func ioeventfdEdgesWithoutReads() throws {
        // mov rcx,0xfee01000; again: mov word [rcx+8],1; hlt; jmp again (back 9 bytes)
        let code = Self.ringDoorbell + [0xF4, 0xEB, 0xF7]
        let guest = try TinyGuest(code: code, longMode: true)
        let doorbell = try EventFD()
        try guest.vm.registerIOEventFD(eventfd: doorbell.fd, address: 0xFEE0_1008, length: 2, isPIO: false)
        // As vmm's QueueDoorbells watch them: the counter is never read, so a level-triggered
        // watch would report it forever after the first write.
        let loop = try EventLoop(name: "doorbells")
        let served = Mutex(0)
        try loop.add(doorbell.fd, interest: [.readable, .edgeTriggered]) { _ in
            served.withLock { $0 += 1 }
            return .keep
        }
        try loop.start()
        defer { loop.stop() }
        for write in 1...3 {
            let exits = try guest.runToHalt()
            #expect(exits.mmio == 0)
            var seen = 0
            for _ in 0..<200 where seen < write {
                usleep(5_000)
                seen = served.withLock { $0 }
            }
            #expect(seen == write, "write \(write) was served \(seen) times in all")
        }
        usleep(20_000)
        #expect(served.withLock { $0 } == 3)
    }

    @Test("after deassign the same write exits to the VMM again")
    func ioeventfdDeassign() throws {
        // The doorbell; hlt
        let code = Self.ringDoorbell + [0xF4]
        let guest = try TinyGuest(code: code, longMode: true)
        let device = EchoDevice(answer: 0)
        try guest.mmio.insert(device, base: 0xFEE0_1000, length: 0x100)
        let doorbell = try EventFD()
        try guest.vm.registerIOEventFD(eventfd: doorbell.fd, address: 0xFEE0_1008, length: 2, isPIO: false)
        try guest.vm.registerIOEventFD(
            eventfd: doorbell.fd, address: 0xFEE0_1008, length: 2, isPIO: false, deassign: true)
        let exits = try guest.runToHalt()
        #expect(doorbell.drain() == 0)
        #expect(exits.mmio == 1)
        #expect(device.writes.withLock { $0.map(\.offset) } == [8])
    }

    @Test("deassigning what was never assigned fails and names the call")
    func deassignUnknown() throws {
        let kvm = try KVMSystem()
        let vm = try kvm.createVM()
        let event = try EventFD()
        #expect(throws: KVMError.ioctl("KVM_IOEVENTFD (deassign)", errno: ENOENT)) {
            try vm.registerIOEventFD(eventfd: event.fd, address: 0xC000_3000, length: 2, isPIO: false, deassign: true)
        }
    }

    @Test("a routing table with the irqchip defaults and MSI routes is accepted, and irqfds attach")
    func msiRoutesAndIRQFD() throws {
        let kvm = try KVMSystem()
        let vm = try kvm.createVM()
        try vm.createIRQChip()
        let routes =
            IRQRoute.defaultIRQChipRoutes + [
                IRQRoute(gsi: 24, target: .msi(address: 0xFEE0_0000, data: 0x41)),
                IRQRoute(gsi: 25, target: .msi(address: 0xFEE0_1000, data: 0x42)),
            ]
        try vm.setGSIRouting(routes)
        let event = try EventFD()
        try vm.registerIRQFD(eventfd: event.fd, gsi: 24)
        event.signal()  // delivered into the (halted, absent) vCPU's APIC: must not fail
        // The legacy lines still work through the table: raise and lower IRQ 4.
        try vm.setIRQLine(4, high: true)
        try vm.setIRQLine(4, high: false)
    }

    @Test("the default routes mirror KVM's: 16 PIC and 24 IOAPIC entries")
    func defaultRoutes() {
        let routes = IRQRoute.defaultIRQChipRoutes
        #expect(routes.count == 40)
        #expect(routes.contains(IRQRoute(gsi: 9, target: .irqchip(chip: 1, pin: 1))))
        #expect(routes.contains(IRQRoute(gsi: 9, target: .irqchip(chip: 2, pin: 9))))
        #expect(routes.contains(IRQRoute(gsi: 23, target: .irqchip(chip: 2, pin: 23))))
        #expect(!routes.contains { $0.gsi >= 16 && $0.target != .irqchip(chip: 2, pin: $0.gsi) })
    }

    @Test("a route to a GSI beyond KVM's table is refused with the ioctl named")
    func routeOutOfRange() throws {
        let kvm = try KVMSystem()
        let vm = try kvm.createVM()
        try vm.createIRQChip()
        #expect(throws: KVMError.ioctl("KVM_SET_GSI_ROUTING", errno: EINVAL)) {
            try vm.setGSIRouting([IRQRoute(gsi: 100_000, target: .msi(address: 0xFEE0_0000, data: 0))])
        }
    }
}
