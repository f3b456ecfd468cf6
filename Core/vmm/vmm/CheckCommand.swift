import ArgumentParser
import CKVM
import GuestMemory
import KVM
import VMM
import X86

#if canImport(Glibc)
    import Glibc
#endif

/// `vmm check`: proves that this host's KVM can run vmtools guests, like `kvm-ok` but by doing it.
///
/// Opens the KVM device, checks the API version and every capability the VMM relies on, then
/// starts a vCPU in 64-bit long mode on a tiny guest that does port I/O, an MMIO write and read,
/// and a RAM store, and checks each exit.
struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check", abstract: "Check that KVM works here by running a tiny guest.")

    @Option(help: "The KVM device.")
    var device = "/dev/kvm"

    func run() throws {
        let start = Logger.now()
        let kvm = try KVMSystem(path: device)
        try kvm.require(KVMCapability.required)
        print(
            "kvm: \(device) API 12, \(KVMCapability.required.count) required capabilities present, max vCPUs \(kvm.checkExtension(.maxVCPUs))"
        )
        let report = try ProbeGuest.run(on: kvm)
        let elapsed = Logger.now() - start
        print("kvm: vCPU ran a long-mode guest: \(report) in \(elapsed / 1_000_000).\(elapsed / 100_000 % 10) ms")
        print("kvm: OK")
    }
}

/// The tiny long-mode guest behind `vmm check`.
enum ProbeGuest {
    static let serialPort: UInt16 = 0x3F8
    static let mmioAddress: UInt64 = 0xD000_0000
    static let ramMarker: UInt64 = 0x2000
    static let entry: UInt64 = 0x1000

    /// mov dx,0x3f8; mov al,'K'; out dx,al; mov rcx,0xd0000000; mov [rcx],al; mov al,[rcx];
    /// out dx,al; mov [0x2000],al; hlt
    static let code: [UInt8] = [
        0x66, 0xBA, 0xF8, 0x03, 0xB0, 0x4B, 0xEE,
        0x48, 0xB9, 0x00, 0x00, 0x00, 0xD0, 0x00, 0x00, 0x00, 0x00,
        0x88, 0x01, 0x8A, 0x01, 0xEE,
        0x88, 0x04, 0x25, 0x00, 0x20, 0x00, 0x00,
        0xF4,
    ]

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    static func run(on kvm: KVMSystem) throws -> String {
        let vm = try kvm.createVM()
        let memory = try GuestMemory(ranges: [(0, 2 << 20)])
        for (slot, region) in memory.regions.enumerated() {
            try vm.setUserMemoryRegion(
                slot: UInt32(slot), guestAddress: region.guestAddress, size: region.size,
                hostAddress: region.hostAddress)
        }
        try memory.write(code, at: entry)
        let vcpu = try vm.createVCPU(id: 0)
        try LongMode.start(vcpu, memory: memory, entry: entry, stack: 0x8000)

        var outputs: [UInt8] = []
        var mmioWrites: [UInt8] = []
        exits: for _ in 0..<16 {
            switch try vcpu.run() {
            case .io(let port, true, 1, 1, let data) where port == serialPort:
                outputs.append(data[0])
            case .mmio(let address, let isWrite, let data) where address == mmioAddress && data.count == 1:
                if isWrite { mmioWrites.append(data[0]) } else { data[0] = UInt8(ascii: "M") }
            case .halt:
                break exits
            case let exit:
                throw Failure(description: "probe guest: unexpected exit \(exit)")
            }
        }
        let marker = try memory.load(UInt8.self, at: ramMarker)
        guard outputs == [UInt8(ascii: "K"), UInt8(ascii: "M")], mmioWrites == [UInt8(ascii: "K")],
            marker == UInt8(ascii: "M")
        else {
            throw Failure(
                description: "probe guest: wrong results (port \(outputs), mmio \(mmioWrites), ram \(marker))")
        }
        return "2 port writes, 1 MMIO write, 1 MMIO read, 1 RAM store, halt"
    }
}
