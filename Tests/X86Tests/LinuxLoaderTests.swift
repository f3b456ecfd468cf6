import GuestMemory
import Testing

@testable import X86

/// A synthetic bzImage: a setup area holding the boot-protocol header, then a patterned payload.
struct SyntheticBzImage {
    var setupSects: UInt8 = 4
    var bootFlag: UInt16 = 0xAA55
    var magic: UInt32 = 0x5372_6448  // "HdrS"
    var version: UInt16 = 0x020F
    var xLoadFlags: UInt16 = 0x0001  // XLF_KERNEL_64
    /// The byte after the 0xEB jump at 0x200: the header ends at 0x202 + this.
    var jumpOffset: UInt8 = 0x66
    var initSize: UInt32 = 1 << 20
    var cmdlineSize: UInt32 = 2048
    var initrdAddrMax: UInt32 = 0x7FFF_FFFF
    var payloadSize = 0x1800
    /// Extra bytes to place in the setup area: (offset, value).
    var extra: [(Int, UInt8)] = []

    var setupBytes: Int { (Int(setupSects == 0 ? 4 : setupSects) + 1) * 512 }

    static func payloadByte(_ i: Int) -> UInt8 { UInt8(truncatingIfNeeded: i &* 7 &+ i >> 8 &+ 3) }

    var payload: [UInt8] { (0..<payloadSize).map(Self.payloadByte) }

    var bytes: [UInt8] {
        var file = [UInt8](repeating: 0, count: setupBytes)
        file[0x1F1] = setupSects
        file.put(bootFlag, at: 0x1FE)
        file[0x200] = 0xEB
        file[0x201] = jumpOffset
        file.put(magic, at: 0x202)
        file.put(version, at: 0x206)
        file.put(initrdAddrMax, at: 0x22C)
        file.put(UInt32(0x20_0000), at: 0x230)  // kernel_alignment
        file[0x234] = 1  // relocatable_kernel
        file.put(xLoadFlags, at: 0x236)
        file.put(cmdlineSize, at: 0x238)
        file.put(UInt64(0x100_0000), at: 0x258)  // pref_address
        file.put(initSize, at: 0x260)
        for (offset, value) in extra { file[offset] = value }
        return file + payload
    }
}

extension [UInt8] {
    mutating func put<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        for i in 0..<MemoryLayout<T>.size { self[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * i)) }
    }
}

extension LoaderError {
    /// The case, without its message, so tests can tell the cases apart.
    var caseName: String {
        switch self {
        case .notAKernel: "notAKernel"
        case .unsupported: "unsupported"
        case .tooLittleMemory: "tooLittleMemory"
        case .commandLine: "commandLine"
        }
    }
}

/// Runs `body`, which must throw a ``LoaderError``, and returns that error.
func loaderError(_ body: () throws -> Void) -> LoaderError? {
    do {
        try body()
        return nil
    } catch let error as LoaderError {
        return error
    } catch {
        Issue.record("expected a LoaderError, got \(error)")
        return nil
    }
}

@Suite("bzImage parsing")
struct BzImageTests {
    @Test("a good header yields the setup header, the payload after the setup sectors, and the sizes")
    func parsesHeader() throws {
        let image = SyntheticBzImage(initSize: 0x123_4000, cmdlineSize: 4095, initrdAddrMax: 0x37FF_FFFF)
        let parsed = try BzImage(image.bytes)
        #expect(parsed.initSize == 0x123_4000)
        #expect(parsed.cmdlineSize == 4095)
        #expect(parsed.initrdAddrMax == 0x37FF_FFFF)
        #expect(
            Array(image.bytes[parsed.payloadOffset...]) == image.payload && parsed.payloadSize == image.payload.count)
        // The header runs from 0x1F1 to 0x202 + the jump offset.
        #expect(parsed.setupHeader.count == 0x202 + 0x66 - 0x1F1)
        #expect(Array(parsed.setupHeader) == Array(image.bytes[0x1F1..<0x268]))
    }

    @Test(
        "the payload starts after (setup_sects + 1) sectors, with setup_sects 0 meaning 4",
        arguments: [(0, 5 * 512), (1, 2 * 512), (4, 5 * 512), (30, 31 * 512)] as [(UInt8, Int)])
    func setupSectors(sects: UInt8, payloadOffset: Int) throws {
        let image = SyntheticBzImage(setupSects: sects)
        let parsed = try BzImage(image.bytes)
        #expect(parsed.payloadOffset == payloadOffset)
        #expect(
            Array(image.bytes[parsed.payloadOffset...]) == image.payload && parsed.payloadSize == image.payload.count)
    }

    @Test("a jump offset past the end of the known header is clamped at 0x280")
    func headerLengthClamped() throws {
        let parsed = try BzImage(SyntheticBzImage(jumpOffset: 0xFF).bytes)
        #expect(parsed.setupHeader.count == 0x280 - 0x1F1)
    }

    @Test("a file shorter than 4 KiB is not a kernel, and the message gives its size")
    func tooShort() {
        let error = loaderError { _ = try BzImage([UInt8](repeating: 0, count: 0xFFF)) }
        #expect(error?.caseName == "notAKernel")
        #expect(error?.description.contains("4095 bytes") == true)
        #expect(error?.description.hasPrefix("not a Linux kernel") == true)
    }

    @Test("the bzImage parser no longer special-cases ELF: the loader sends ELF files down the PVH path")
    func elf() throws {
        var file = SyntheticBzImage().bytes
        file.replaceSubrange(0..<4, with: [0x7F, 0x45, 0x4C, 0x46])
        // Still a valid bzImage header after the first four bytes, so BzImage itself takes it.
        _ = try BzImage(file)
        // LinuxLoader sees the ELF magic first and parses an ELF header.
        let memory = try GuestMemory(ranges: [(0, 16 << 20)])
        let error = loaderError {
            _ = try LinuxLoader().load(kernel: file, initrd: nil, commandLine: "", e820: [], into: memory)
        }
        #expect(error?.description.contains("ELF") == true)
    }

    @Test("a short ELF file is still reported as too short, not parsed")
    func shortELF() {
        let error = loaderError { _ = try BzImage([0x7F, 0x45, 0x4C, 0x46] + [UInt8](repeating: 0, count: 60)) }
        #expect(error?.caseName == "notAKernel")
    }

    @Test(
        "a file without the 0xAA55 boot flag or the HdrS magic is not a kernel",
        arguments: [
            SyntheticBzImage(bootFlag: 0x55AA), SyntheticBzImage(bootFlag: 0), SyntheticBzImage(magic: 0x4864_7253),
            SyntheticBzImage(magic: 0),
        ])
    func missingSignature(image: SyntheticBzImage) {
        let error = loaderError { _ = try BzImage(image.bytes) }
        #expect(error?.caseName == "notAKernel")
        #expect(error?.description.contains("HdrS") == true)
    }

    @Test("boot protocol older than 2.12 is refused, naming the version found", arguments: [UInt16(0x020B), 0x0204])
    func oldProtocol(version: UInt16) {
        let error = loaderError { _ = try BzImage(SyntheticBzImage(version: version).bytes) }
        #expect(error?.caseName == "unsupported")
        #expect(error?.description.contains("2.\(version & 0xFF)") == true)
        #expect(error?.description.contains("2.12") == true)
    }

    @Test("boot protocol 2.12 itself is accepted")
    func protocol212() throws {
        _ = try BzImage(SyntheticBzImage(version: 0x020C).bytes)
    }

    @Test("a kernel without XLF_KERNEL_64 is refused as having no 64-bit entry point")
    func no64BitEntry() {
        let error = loaderError { _ = try BzImage(SyntheticBzImage(xLoadFlags: 0x0002).bytes) }
        #expect(error?.caseName == "unsupported")
        #expect(error?.description.contains("64-bit") == true)
    }

    @Test("setup sectors that cover the whole file are refused")
    func setupFillsFile() {
        let image = SyntheticBzImage(setupSects: 30, payloadSize: 0)
        let error = loaderError { _ = try BzImage(image.bytes) }
        #expect(error?.caseName == "notAKernel")
        #expect(error?.description.contains("setup") == true)
    }
}

@Suite("Linux loader")
struct LinuxLoaderTests {
    static let sixteenMiB: UInt64 = 16 << 20

    func zeroPage(_ memory: GuestMemory) throws -> [UInt8] {
        try memory.read(at: LinuxLoader.zeroPageAddress, count: BootParams.size)
    }

    @Test("a good image loads: payload at 2 MiB, entry at load address + 0x200, zero page at 0x7000")
    func goodImage() throws {
        let image = SyntheticBzImage()
        let memory = try GuestMemory(ranges: [(0, Self.sixteenMiB)])
        let entry = try LinuxLoader().load(
            kernel: image.bytes, initrd: nil, commandLine: "console=ttyS0", e820: LinuxLoader.e820Map(for: memory),
            into: memory)
        #expect(entry.boot == .longMode(rip: 0x20_0200, zeroPage: 0x7000))
        #expect(entry.kernelStart == 0x20_0000)
        #expect(entry.kernelEnd == 0x20_0000 + (1 << 20))  // init_size is larger than the payload
        #expect(entry.initrd == nil)
        #expect(try memory.read(at: 0x20_0000, count: image.payloadSize) == image.payload)
        // Nothing of the setup area lands at 2 MiB.
        #expect(
            try memory.read(at: 0x20_0000 + UInt64(image.payloadSize), count: 16) == [UInt8](repeating: 0, count: 16))
    }

    @Test("kernelEnd covers the payload when it is larger than init_size")
    func kernelEndFromPayload() throws {
        let image = SyntheticBzImage(initSize: 0x100, payloadSize: 0x3000)
        let memory = try GuestMemory(ranges: [(0, Self.sixteenMiB)])
        let entry = try LinuxLoader().load(
            kernel: image.bytes, initrd: nil, commandLine: "", e820: [], into: memory)
        #expect(entry.kernelEnd == 0x20_3000)
    }

    @Test("the zero page carries the setup header, loader type 0xFF, loadflags and the heap end")
    func zeroPageFields() throws {
        let image = SyntheticBzImage(extra: [(0x270, 0x5A)])  // past the header: must not be copied
        let memory = try GuestMemory(ranges: [(0, Self.sixteenMiB)])
        _ = try LinuxLoader().load(kernel: image.bytes, initrd: nil, commandLine: "quiet", e820: [], into: memory)
        let page = try zeroPage(memory)
        #expect(page[0x210] == 0xFF)  // type_of_loader
        #expect(page[0x211] & 0x01 == 0x01)  // LOADED_HIGH
        #expect(page[0x211] & 0x80 == 0x80)  // CAN_USE_HEAP
        #expect(page.loadLE(UInt16.self, at: 0x224) == 0xFE00)  // heap_end_ptr
        // Header fields are copied from the file.
        #expect(page[0x1F1] == 4)
        #expect(page.loadLE(UInt16.self, at: 0x1FE) == 0xAA55)
        #expect(page.loadLE(UInt32.self, at: 0x202) == 0x5372_6448)
        #expect(page.loadLE(UInt16.self, at: 0x206) == 0x020F)
        #expect(page.loadLE(UInt32.self, at: 0x230) == 0x20_0000)
        #expect(page.loadLE(UInt16.self, at: 0x236) == 0x0001)
        #expect(page.loadLE(UInt64.self, at: 0x258) == 0x100_0000)
        #expect(page.loadLE(UInt32.self, at: 0x260) == 1 << 20)
        // Bytes before the header and after its end stay zero.
        #expect(page[0..<0x1F1].allSatisfy { $0 == 0 })
        #expect(page[0x270] == 0)
    }

    @Test("the command line is NUL-terminated at 0x20000 and cmd_line_ptr points at it")
    func commandLine() throws {
        let memory = try GuestMemory(ranges: [(0, Self.sixteenMiB)])
        try memory.write([UInt8](repeating: 0xEE, count: 64), at: LinuxLoader.commandLineAddress)
        let commandLine = "console=ttyS0 root=/dev/vda rw"
        _ = try LinuxLoader().load(
            kernel: SyntheticBzImage().bytes, initrd: nil, commandLine: commandLine, e820: [], into: memory)
        let page = try zeroPage(memory)
        #expect(page.loadLE(UInt32.self, at: 0x228) == 0x20000)
        #expect(page.loadLE(UInt32.self, at: 0x0C8) == 0)  // ext_cmd_line_ptr
        let bytes = Array(commandLine.utf8)
        #expect(try memory.read(at: 0x20000, count: bytes.count + 1) == bytes + [0])
    }

    @Test("a command line of exactly cmdline_size bytes is accepted")
    func commandLineAtLimit() throws {
        let memory = try GuestMemory(ranges: [(0, Self.sixteenMiB)])
        let commandLine = String(repeating: "x", count: 64)
        _ = try LinuxLoader().load(
            kernel: SyntheticBzImage(cmdlineSize: 64).bytes, initrd: nil, commandLine: commandLine, e820: [],
            into: memory)
        #expect(try memory.read(at: 0x20000 + 64, count: 1) == [0])
    }

    @Test("a command line longer than cmdline_size is refused, giving both lengths")
    func commandLineTooLong() throws {
        let memory = try GuestMemory(ranges: [(0, Self.sixteenMiB)])
        let error = loaderError {
            _ = try LinuxLoader().load(
                kernel: SyntheticBzImage(cmdlineSize: 64).bytes, initrd: nil,
                commandLine: String(repeating: "x", count: 65), e820: [], into: memory)
        }
        #expect(error?.caseName == "commandLine")
        #expect(error?.description.contains("65") == true)
        #expect(error?.description.contains("64") == true)
    }

    @Test("a command line containing a NUL byte is refused with a message that says so")
    func commandLineWithNUL() throws {
        let memory = try GuestMemory(ranges: [(0, Self.sixteenMiB)])
        let error = loaderError {
            _ = try LinuxLoader().load(
                kernel: SyntheticBzImage().bytes, initrd: nil, commandLine: "console=ttyS0\0init=/bin/sh", e820: [],
                into: memory)
        }
        #expect(error?.caseName == "commandLine")
        // The command line is well within the limit, so a message about its length would mislead.
        let message = error?.description ?? ""
        #expect(
            message.contains("NUL") || message.contains("zero byte") || message.contains("\\0"),
            "message does not mention the NUL byte: \(message)")
    }

    @Test("memory too small for init_size above 2 MiB is refused before anything is written")
    func tooLittleMemoryForKernel() throws {
        let memory = try GuestMemory(ranges: [(0, Self.sixteenMiB)])
        let error = loaderError {
            _ = try LinuxLoader().load(
                kernel: SyntheticBzImage(initSize: 32 << 20).bytes, initrd: nil, commandLine: "", e820: [],
                into: memory)
        }
        #expect(error?.caseName == "tooLittleMemory")
        #expect(error?.description.contains("32 MiB") == true)
        #expect(try memory.read(at: 0x20_0000, count: 16) == [UInt8](repeating: 0, count: 16))
    }

    @Test("the initrd goes page-aligned at the top of low RAM, and the zero page records it")
    func initrdPlacement() throws {
        let memory = try GuestMemory(ranges: [(0, Self.sixteenMiB)])
        let initrd = (0..<5000).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 1) }
        let entry = try LinuxLoader().load(
            kernel: SyntheticBzImage().bytes, initrd: initrd, commandLine: "", e820: [], into: memory)
        let expected: UInt64 = 0xFF_E000  // (16 MiB - 5000) rounded down to a page
        let placed = try #require(entry.initrd)
        #expect(placed.address == expected)
        #expect(placed.size == 5000)
        #expect(try memory.read(at: expected, count: initrd.count) == initrd)
        let page = try zeroPage(memory)
        #expect(page.loadLE(UInt32.self, at: 0x218) == UInt32(expected))  // ramdisk_image
        #expect(page.loadLE(UInt32.self, at: 0x21C) == 5000)  // ramdisk_size
        #expect(page.loadLE(UInt32.self, at: 0x0C0) == 0)  // ext_ramdisk_image
        #expect(page.loadLE(UInt32.self, at: 0x0C4) == 0)  // ext_ramdisk_size
    }

    @Test("the initrd stays below initrd_addr_max")
    func initrdAddrMax() throws {
        let memory = try GuestMemory(ranges: [(0, Self.sixteenMiB)])
        let entry = try LinuxLoader().load(
            kernel: SyntheticBzImage(initrdAddrMax: 0x7F_FFFF).bytes, initrd: [UInt8](repeating: 7, count: 0x2000),
            commandLine: "", e820: [], into: memory)
        #expect(entry.initrd?.address == 0x7F_E000)
        #expect(try memory.read(at: 0x7F_E000, count: 0x2000) == [UInt8](repeating: 7, count: 0x2000))
    }

    @Test("with RAM split around the MMIO hole the initrd goes at the top of the region below 3 GiB")
    func initrdBelowHole() throws {
        let memory = try GuestMemory(ranges: GuestMemory.x86Ranges(size: 5 << 30))
        let entry = try LinuxLoader().load(
            kernel: SyntheticBzImage(initrdAddrMax: 0xFFFF_FFFF).bytes, initrd: [1, 2, 3], commandLine: "",
            e820: LinuxLoader.e820Map(for: memory), into: memory)
        #expect(entry.initrd?.address == 0xC000_0000 - 0x1000)
        #expect(try memory.read(at: 0xC000_0000 - 0x1000, count: 3) == [1, 2, 3])
    }

    @Test("an empty initrd is treated as none")
    func emptyInitrd() throws {
        let memory = try GuestMemory(ranges: [(0, Self.sixteenMiB)])
        let entry = try LinuxLoader().load(
            kernel: SyntheticBzImage().bytes, initrd: [], commandLine: "", e820: [], into: memory)
        #expect(entry.initrd == nil)
        let page = try zeroPage(memory)
        #expect(page.loadLE(UInt32.self, at: 0x218) == 0)
        #expect(page.loadLE(UInt32.self, at: 0x21C) == 0)
    }

    @Test("an initrd that does not fit between the kernel and the top of RAM is refused")
    func initrdTooLarge() throws {
        let memory = try GuestMemory(ranges: [(0, Self.sixteenMiB)])
        // The kernel occupies 2 MiB ... 3 MiB; 13 MiB + 1 page cannot fit above it.
        let error = loaderError {
            _ = try LinuxLoader().load(
                kernel: SyntheticBzImage().bytes, initrd: [UInt8](repeating: 0, count: (13 << 20) + 4096),
                commandLine: "", e820: [], into: memory)
        }
        #expect(error?.caseName == "tooLittleMemory")
        #expect(error?.description.contains("initrd") == true)
    }

    @Test("an initrd that exactly fills RAM above the kernel is accepted")
    func initrdExactFit() throws {
        let memory = try GuestMemory(ranges: [(0, Self.sixteenMiB)])
        let entry = try LinuxLoader().load(
            kernel: SyntheticBzImage().bytes, initrd: [UInt8](repeating: 9, count: 13 << 20), commandLine: "",
            e820: [], into: memory)
        #expect(entry.initrd?.address == 3 << 20)
    }

    @Test("an initrd larger than all of RAM below initrd_addr_max is refused, not wrapped around")
    func initrdLargerThanRAM() throws {
        let memory = try GuestMemory(ranges: [(0, Self.sixteenMiB)])
        let error = loaderError {
            _ = try LinuxLoader().load(
                kernel: SyntheticBzImage(initrdAddrMax: 0xF_FFFF).bytes, initrd: [UInt8](repeating: 0, count: 2 << 20),
                commandLine: "", e820: [], into: memory)
        }
        #expect(error?.caseName == "tooLittleMemory")
    }

    @Test("e820 entries are written at 0x2D0, 20 bytes each, with their count at 0x1E8")
    func e820InZeroPage() throws {
        let memory = try GuestMemory(ranges: [(0, Self.sixteenMiB)])
        let map = LinuxLoader.e820Map(for: memory)
        _ = try LinuxLoader().load(
            kernel: SyntheticBzImage().bytes, initrd: nil, commandLine: "", e820: map, into: memory)
        let page = try zeroPage(memory)
        #expect(Int(page[0x1E8]) == map.count)
        #expect(map.count == 3)
        for (i, entry) in map.enumerated() {
            let offset = 0x2D0 + 20 * i
            #expect(page.loadLE(UInt64.self, at: offset) == entry.address)
            #expect(page.loadLE(UInt64.self, at: offset + 8) == entry.size)
            #expect(page.loadLE(UInt32.self, at: offset + 16) == entry.kind.rawValue)
        }
        #expect(page.loadLE(UInt64.self, at: 0x2D0 + 20 * 2) == 0x10_0000)
        #expect(page.loadLE(UInt64.self, at: 0x2D0 + 20 * 2 + 8) == Self.sixteenMiB - 0x10_0000)
        #expect(page.loadLE(UInt32.self, at: 0x2D0 + 20 * 1 + 16) == 2)  // reserved
        // Nothing after the last entry.
        #expect(page[(0x2D0 + 20 * 3)..<(0x2D0 + 20 * 4)].allSatisfy { $0 == 0 })
    }

    @Test("more e820 entries than the zero page holds are refused")
    func tooManyE820Entries() throws {
        let memory = try GuestMemory(ranges: [(0, Self.sixteenMiB)])
        let map = (0..<129).map { E820Entry(address: UInt64($0) << 12, size: 0x1000, kind: .ram) }
        let error = loaderError {
            _ = try LinuxLoader().load(
                kernel: SyntheticBzImage().bytes, initrd: nil, commandLine: "", e820: map, into: memory)
        }
        #expect(error?.description.contains("e820") == true)
    }

    @Test("parse errors from the image surface unchanged from load")
    func loadPropagatesParseErrors() throws {
        let memory = try GuestMemory(ranges: [(0, Self.sixteenMiB)])
        let error = loaderError {
            _ = try LinuxLoader().load(
                kernel: SyntheticBzImage(xLoadFlags: 0).bytes, initrd: nil, commandLine: "", e820: [], into: memory)
        }
        #expect(error?.caseName == "unsupported")
    }

    @Test("the four error cases are distinct and their messages say what went wrong")
    func errorDescriptions() {
        let errors: [LoaderError] = [.notAKernel("a"), .unsupported("a"), .tooLittleMemory("a"), .commandLine("a")]
        #expect(Set(errors.map(\.caseName)).count == 4)
        #expect(LoaderError.notAKernel("x").description == "not a Linux kernel: x")
        #expect(LoaderError.unsupported("x").description == "unsupported kernel: x")
        #expect(LoaderError.tooLittleMemory("x").description == "not enough guest memory: x")
        #expect(LoaderError.commandLine("x").description == "x")
    }
}

@Suite("e820 map")
struct E820MapTests {
    @Test("256 MiB: base memory up to the MP table, the MP table reserved, RAM from 1 MiB")
    func singleRegion() throws {
        let memory = try GuestMemory(ranges: [(0, 256 << 20)])
        #expect(
            LinuxLoader.e820Map(for: memory) == [
                E820Entry(address: 0, size: 0x9_FC00, kind: .ram),
                E820Entry(address: 0x9_FC00, size: 0x400, kind: .reserved),
                E820Entry(address: 0x10_0000, size: (256 << 20) - 0x10_0000, kind: .ram),
            ])
    }

    @Test("the MP table's kilobyte is reserved and covers the whole table")
    func mpTableReserved() throws {
        let memory = try GuestMemory(ranges: [(0, 16 << 20)])
        let reserved = LinuxLoader.e820Map(for: memory).filter { $0.kind == .reserved }
        #expect(reserved.count == 1)
        #expect(reserved.first?.address == LinuxLoader.mpTableAddress)
        let table = try MPTable.build(cpus: MPTable.maxCPUs, at: LinuxLoader.mpTableAddress)
        #expect(UInt64(table.count) <= reserved.first?.size ?? 0)
    }

    @Test("RAM split around the MMIO hole gives one RAM entry per region")
    func splitRegions() throws {
        let memory = try GuestMemory(ranges: [(0, 2 << 20), (0x1_0000_0000, 1 << 20)])
        #expect(
            LinuxLoader.e820Map(for: memory) == [
                E820Entry(address: 0, size: 0x9_FC00, kind: .ram),
                E820Entry(address: 0x9_FC00, size: 0x400, kind: .reserved),
                E820Entry(address: 0x10_0000, size: 0x10_0000, kind: .ram),
                E820Entry(address: 0x1_0000_0000, size: 0x10_0000, kind: .ram),
            ])
    }

    @Test("5 GiB with the x86 layout: 3 GiB below the hole, 2 GiB from 4 GiB, nothing in the hole")
    func fiveGiB() throws {
        let memory = try GuestMemory(ranges: GuestMemory.x86Ranges(size: 5 << 30))
        let map = LinuxLoader.e820Map(for: memory)
        #expect(
            map == [
                E820Entry(address: 0, size: 0x9_FC00, kind: .ram),
                E820Entry(address: 0x9_FC00, size: 0x400, kind: .reserved),
                E820Entry(address: 0x10_0000, size: 0xC000_0000 - 0x10_0000, kind: .ram),
                E820Entry(address: 0x1_0000_0000, size: 2 << 30, kind: .ram),
            ])
        for entry in map {
            let end = entry.address + entry.size
            #expect(end <= GuestMemory.mmioHoleStart || entry.address >= GuestMemory.mmioHoleEnd)
        }
    }

    @Test("entries are sorted and do not overlap")
    func sortedAndDisjoint() throws {
        let memory = try GuestMemory(ranges: GuestMemory.x86Ranges(size: 5 << 30))
        let map = LinuxLoader.e820Map(for: memory)
        for (a, b) in zip(map, map.dropFirst()) {
            #expect(a.address + a.size <= b.address)
        }
    }
}
