import CKVM
import Synchronization
import Testing

@testable import Devices
@testable import KVM
@testable import X86

/// Records writes; reads answer `base + offset` so a guest can tell devices and offsets apart.
final class EchoDevice: BusDevice {
    let answer: UInt64
    let writes = Mutex<[(offset: UInt64, value: UInt64, size: Int)]>([])

    init(answer: UInt64) { self.answer = answer }

    func read(offset: UInt64, data: UnsafeMutableRawBufferPointer) { data.storeLittleEndian(answer + offset) }

    func write(offset: UInt64, data: UnsafeRawBufferPointer) {
        writes.withLock { $0.append((offset, data.littleEndianValue, data.count)) }
    }
}

// These tests run guests on the build machine's real /dev/kvm (see shared MACHINE.md): they
// fail, rather than skip, where KVM is missing, since the VMM cannot work there either.
@Suite("KVM with tiny guests", .serialized)
struct KVMTests {
    @Test("a missing device gives an error that names it")
    func missingDevice() {
        #expect(throws: KVMError.open(path: "/nonexistent/kvm", errno: 2)) { try KVMSystem(path: "/nonexistent/kvm") }
        #expect(KVMError.open(path: "/dev/kvm", errno: 2).description.contains("is the kvm module loaded?"))
    }

    @Test("the capabilities the VMM needs are present")
    func capabilities() throws {
        let kvm = try KVMSystem()
        try kvm.require(KVMCapability.required)
        #expect(kvm.checkExtension(.maxVCPUs) >= 4)
        #expect(try kvm.vcpuMmapSize() >= 4096)
    }

    @Test("KVM reports supported CPUID leaves and a vCPU accepts them")
    func cpuid() throws {
        let kvm = try KVMSystem()
        let entries = try kvm.supportedCPUID()
        #expect(entries.contains { $0.function == 0 })
        #expect(entries.contains { $0.function == 0x8000_0001 })
        let vcpu = try kvm.createVM().createVCPU(id: 0)
        try vcpu.setCPUID(entries)
    }

    @Test("MSRs written at reset read back")
    func msrs() throws {
        let vcpu = try KVMSystem().createVM().createVCPU(id: 0)
        let sysenterCS: UInt32 = 0x174
        try vcpu.setMSRs([(sysenterCS, 0x10)])
        #expect(try vcpu.msr(sysenterCS) == 0x10)
    }

    @Test("real mode: out to a port reaches the PIO bus, then hlt")
    func realModePIO() throws {
        // mov al,0x42; out 0x10,al; hlt
        let guest = try TinyGuest(code: [0xB0, 0x42, 0xE6, 0x10, 0xF4], longMode: false)
        let device = EchoDevice(answer: 0)
        try guest.pio.insert(device, base: 0x10, length: 1)
        let exits = try guest.runToHalt()
        #expect(exits.pio == 1)
        #expect(device.writes.withLock { $0.map(\.value) } == [0x42])
    }

    @Test("long mode: port reads and writes of 1, 2 and 4 bytes dispatch with relative offsets")
    func longModePIO() throws {
        // mov dx,0x3f9; in al,dx; out dx,al; mov dx,0x3fa; in ax,dx; out dx,ax; in eax,dx;
        // mov [0x2000],eax; hlt
        let code: [UInt8] = [
            0x66, 0xBA, 0xF9, 0x03, 0xEC, 0xEE,
            0x66, 0xBA, 0xFA, 0x03, 0x66, 0xED, 0x66, 0xEF, 0xED,
            0x89, 0x04, 0x25, 0x00, 0x20, 0x00, 0x00,
            0xF4,
        ]
        let guest = try TinyGuest(code: code, longMode: true)
        let device = EchoDevice(answer: 0x1122_3300)
        try guest.pio.insert(device, base: 0x3F8, length: 8)
        let exits = try guest.runToHalt()
        #expect(exits.pio == 5)
        let writes = device.writes.withLock { $0 }
        #expect(writes.map(\.offset) == [1, 2])
        #expect(writes.map(\.size) == [1, 2])
        #expect(writes.map(\.value) == [0x01, 0x3302])
        #expect(try guest.memory.load(UInt32.self, at: 0x2000) == 0x1122_3302)
    }

    @Test("long mode: MMIO in the 32-bit hole dispatches, through the 4 GiB identity map")
    func longModeMMIO() throws {
        // mov rcx,0xfee01000; mov dword [rcx+8],0xabcd; mov rax,[rcx+0x10]; mov [0x2000],rax; hlt
        let code: [UInt8] = [
            0x48, 0xB9, 0x00, 0x10, 0xE0, 0xFE, 0x00, 0x00, 0x00, 0x00,
            0xC7, 0x41, 0x08, 0xCD, 0xAB, 0x00, 0x00,
            0x48, 0x8B, 0x41, 0x10,
            0x48, 0x89, 0x04, 0x25, 0x00, 0x20, 0x00, 0x00,
            0xF4,
        ]
        let guest = try TinyGuest(code: code, longMode: true)
        let device = EchoDevice(answer: 0x5500_0000_0000_0000)
        try guest.mmio.insert(device, base: 0xFEE0_1000, length: 0x100)
        let exits = try guest.runToHalt()
        #expect(exits.mmio == 2)
        #expect(device.writes.withLock { $0.map(\.offset) } == [8])
        #expect(device.writes.withLock { $0.map(\.value) } == [0xABCD])
        #expect(try guest.memory.load(UInt64.self, at: 0x2000) == 0x5500_0000_0000_0010)
    }

    @Test("MMIO to an address with no device reads all ones")
    func unclaimedMMIO() throws {
        // mov rcx,0xd0000000; mov eax,[rcx]; mov [0x2000],eax; hlt
        let code: [UInt8] = [
            0x48, 0xB9, 0x00, 0x00, 0x00, 0xD0, 0x00, 0x00, 0x00, 0x00,
            0x8B, 0x01, 0x89, 0x04, 0x25, 0x00, 0x20, 0x00, 0x00, 0xF4,
        ]
        let guest = try TinyGuest(code: code, longMode: true)
        try guest.runToHalt()
        #expect(try guest.memory.load(UInt32.self, at: 0x2000) == 0xFFFF_FFFF)
    }

    @Test("vCPU state after long-mode setup: paging, PAE, LME/LMA, 64-bit code segment")
    func longModeState() throws {
        let guest = try TinyGuest(code: [0xF4], longMode: true)
        let sregs = try guest.vcpu.specialRegisters()
        #expect(sregs.cr0 & X86Bits.cr0PG != 0 && sregs.cr0 & X86Bits.cr0PE != 0)
        #expect(sregs.cr4 & X86Bits.cr4PAE != 0)
        #expect(sregs.efer & (X86Bits.eferLME | X86Bits.eferLMA) == X86Bits.eferLME | X86Bits.eferLMA)
        #expect(sregs.cs.l == 1 && sregs.cs.selector == LongModeLayout.codeSelector)
        #expect(sregs.cr3 == LongModeLayout.pml4Address)
        try guest.runToHalt()
    }
}
