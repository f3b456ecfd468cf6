import Foundation
import GuestMemory
import Testing
import VirtioDriver

@testable import Virtio

/// A raw disk image in the temporary directory, removed when the test is done with it.
final class TemporaryDisk {
    let url: URL
    var path: String { url.path }

    /// An image of `size` bytes where byte i holds `i % 251` (so every sector differs).
    init(size: Int = 8 * 512, name: String = "disk") throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("vmtools-\(name)-\(UUID().uuidString).img")
        try Data(Self.pattern(0..<size)).write(to: url)
    }

    deinit { try? FileManager.default.removeItem(at: url) }

    static func pattern(_ range: Range<Int>) -> [UInt8] { range.map { UInt8($0 % 251) } }

    func contents() throws -> [UInt8] { [UInt8](try Data(contentsOf: url)) }
}

@Suite("virtio-blk")
struct VirtioBlockTests {
    static let sector = 512

    let memory: GuestMemory
    /// The driver's view of the request queue, and the device's.
    var queue: QueueDriver
    var device: Virtqueue
    let disk: TemporaryDisk

    init() throws {
        memory = try makeMemory()
        queue = try QueueDriver(memory: memory, size: 16)
        device = try queue.deviceQueue()
        disk = try TemporaryDisk()
    }

    /// Lets `block` serve everything available; returns whether it completed anything.
    mutating func serve(_ block: VirtioBlock) throws -> Bool {
        try block.process(queue: 0, &device, memory: memory)
    }

    /// struct virtio_blk_req's header: type, reserved, sector.
    static func header(type: UInt32, sector: UInt64) -> [UInt8] {
        withUnsafeBytes(of: type.littleEndian) { Array($0) } + [0, 0, 0, 0]
            + withUnsafeBytes(of: sector.littleEndian) { Array($0) }
    }

    /// Makes a request available as header / data / status and lets the device serve it;
    /// returns the status byte and the used length.
    mutating func submit(
        _ block: VirtioBlock, type: UInt32, sector: UInt64, data: QueueDriver.Buffer? = nil
    ) throws -> (status: UInt8, used: UInt32) {
        let header = try queue.place(Self.header(type: type, sector: sector))
        let status = try queue.allocate(1, fill: 0xEE)
        var buffers: [QueueDriver.Buffer] = [.readable(header, 16)]
        if let data { buffers.append(data) }
        buffers.append(.writable(status, 1))
        let head = try queue.offer(buffers)
        #expect(try serve(block))
        #expect(try queue.usedIndex == queue.availableIndex)
        let used = try queue.used(Int(queue.availableIndex) - 1)
        #expect(used.id == UInt32(head))
        return (try memory.load(UInt8.self, at: status), used.length)
    }

    // MARK: - Tests

    @Test("reading sector 1 copies the image's bytes into the guest buffer with status OK")
    mutating func read() throws {
        let block = try VirtioBlock(path: disk.path, readOnly: false)
        let buffer = try queue.allocate(Self.sector, fill: 0)
        let result = try submit(block, type: 0, sector: 1, data: .writable(buffer, UInt32(Self.sector)))
        #expect(result.status == 0)
        #expect(result.used == UInt32(Self.sector) + 1)
        #expect(try memory.read(at: buffer, count: Self.sector) == TemporaryDisk.pattern(512..<1024))
    }

    @Test("a read may scatter into several buffers and end on the last sector")
    mutating func scatteredRead() throws {
        let block = try VirtioBlock(path: disk.path, readOnly: true)
        let a = try queue.allocate(256)
        let b = try queue.allocate(768)
        let header = try queue.place(Self.header(type: 0, sector: 6))
        let status = try queue.allocate(1, fill: 0xEE)
        try queue.offer([.readable(header, 16), .writable(a, 256), .writable(b, 768), .writable(status, 1)])
        #expect(try serve(block))
        #expect(try memory.load(UInt8.self, at: status) == 0)
        #expect(try queue.used(0).length == 1025)
        #expect(try memory.read(at: a, count: 256) == TemporaryDisk.pattern(3072..<3328))
        #expect(try memory.read(at: b, count: 768) == TemporaryDisk.pattern(3328..<4096))
    }

    @Test("the data and the status byte may share the last writable buffer")
    mutating func statusInDataBuffer() throws {
        let block = try VirtioBlock(path: disk.path, readOnly: false)
        let header = try queue.place(Self.header(type: 0, sector: 2))
        let buffer = try queue.allocate(Self.sector + 1, fill: 0xEE)
        try queue.offer([.readable(header, 16), .writable(buffer, UInt32(Self.sector) + 1)])
        #expect(try serve(block))
        #expect(try memory.read(at: buffer, count: Self.sector) == TemporaryDisk.pattern(1024..<1536))
        #expect(try memory.load(UInt8.self, at: buffer + UInt64(Self.sector)) == 0)
        #expect(try queue.used(0).length == UInt32(Self.sector) + 1)
    }

    @Test("a write request lands in the image file")
    mutating func write() throws {
        let block = try VirtioBlock(path: disk.path, readOnly: false)
        let payload = [UInt8](repeating: 0x5A, count: Self.sector)
        let buffer = try queue.place(payload)
        let result = try submit(block, type: 1, sector: 3, data: .readable(buffer, UInt32(Self.sector)))
        #expect(result.status == 0)
        #expect(result.used == 1)
        let contents = try disk.contents()
        #expect(Array(contents[1536..<2048]) == payload)
        #expect(Array(contents[0..<1536]) == TemporaryDisk.pattern(0..<1536))
        #expect(Array(contents[2048...]) == TemporaryDisk.pattern(2048..<4096))
    }

    @Test("a write whose data follows the header in the same descriptor lands in the file")
    mutating func writeInHeaderBuffer() throws {
        let block = try VirtioBlock(path: disk.path, readOnly: false)
        let request = Self.header(type: 1, sector: 0) + [UInt8](repeating: 0xC3, count: Self.sector)
        let buffer = try queue.place(request)
        let status = try queue.allocate(1, fill: 0xEE)
        try queue.offer([.readable(buffer, UInt32(request.count)), .writable(status, 1)])
        #expect(try serve(block))
        #expect(try memory.load(UInt8.self, at: status) == 0)
        #expect(Array(try disk.contents()[0..<512]) == [UInt8](repeating: 0xC3, count: 512))
    }

    @Test("a read-only disk advertises VIRTIO_BLK_F_RO and refuses writes with IOERR")
    mutating func readOnly() throws {
        let block = try VirtioBlock(path: disk.path, readOnly: true)
        #expect(block.isReadOnly)
        #expect(block.features & (1 << 5) != 0)
        let buffer = try queue.place([UInt8](repeating: 0x5A, count: Self.sector))
        let result = try submit(block, type: 1, sector: 0, data: .readable(buffer, UInt32(Self.sector)))
        #expect(result.status == 1)
        #expect(try disk.contents() == TemporaryDisk.pattern(0..<4096))
        // Flushing a read-only disk is harmless.
        #expect(try submit(block, type: 4, sector: 0).status == 0)
    }

    @Test("a writable disk does not advertise VIRTIO_BLK_F_RO but offers flush, seg_max and blk_size")
    func writableFeatures() throws {
        let block = try VirtioBlock(path: disk.path, readOnly: false)
        #expect(block.features & (1 << 5) == 0)
        #expect(block.features & (1 << 9) != 0)
        #expect(block.features & (1 << 2) != 0)
        #expect(block.features & (1 << 6) != 0)
        #expect(block.deviceType == 2)
        #expect(block.queueMaxSizes == [256])
        #expect(block.pciClassCode == 0x01_8000)
    }

    @Test(
        "requests that reach past the end of the disk fail with IOERR",
        arguments: [
            (UInt64(8), 512, UInt32(0)),  // the sector after the last
            (7, 1024, 0),  // starts on the last sector, runs past it
            (UInt64.max, 512, 0),  // sector * 512 overflows
            (UInt64.max / 512, 512, 0),
            (8, 512, 1),  // writes too
            (1 << 60, 512, 1),
        ] as [(UInt64, Int, UInt32)])
    mutating func pastTheEnd(sector: UInt64, length: Int, type: UInt32) throws {
        let block = try VirtioBlock(path: disk.path, readOnly: false)
        let buffer = try queue.allocate(length, fill: 0x77)
        let data: QueueDriver.Buffer =
            type == 0 ? .writable(buffer, UInt32(length)) : .readable(buffer, UInt32(length))
        let result = try submit(block, type: type, sector: sector, data: data)
        #expect(result.status == 1)
        #expect(try disk.contents() == TemporaryDisk.pattern(0..<4096))
        #expect(try memory.read(at: buffer, count: length) == [UInt8](repeating: 0x77, count: length))
    }

    @Test("unknown request types are answered UNSUPP", arguments: [UInt32(2), 3, 5, 11, 13, 0xFFFF_FFFF])
    mutating func unsupported(type: UInt32) throws {
        let block = try VirtioBlock(path: disk.path, readOnly: false)
        let buffer = try queue.allocate(512, fill: 0x77)
        let result = try submit(block, type: type, sector: 0, data: .writable(buffer, 512))
        #expect(result.status == 2)
        #expect(result.used == 1)
        #expect(try disk.contents() == TemporaryDisk.pattern(0..<4096))
    }

    @Test("flush succeeds with status OK")
    mutating func flush() throws {
        let block = try VirtioBlock(path: disk.path, readOnly: false)
        let result = try submit(block, type: 4, sector: 0)
        #expect(result.status == 0)
        #expect(result.used == 1)
    }

    @Test("GET_ID returns an identifying string of at most 20 bytes")
    mutating func getID() throws {
        let block = try VirtioBlock(path: disk.path, readOnly: false)
        let buffer = try queue.allocate(20, fill: 0)
        let result = try submit(block, type: 8, sector: 0, data: .writable(buffer, 20))
        #expect(result.status == 0)
        let bytes = try memory.read(at: buffer, count: 20)
        let id = String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
        #expect(!id.isEmpty)
        #expect(id.hasPrefix("vmtools-"))
        #expect(result.used == UInt32(id.utf8.count) + 1)
    }

    @Test("a header shorter than 16 bytes is answered IOERR")
    mutating func shortHeader() throws {
        let block = try VirtioBlock(path: disk.path, readOnly: false)
        let header = try queue.place(Array(Self.header(type: 0, sector: 0).prefix(8)))
        let data = try queue.allocate(512, fill: 0x77)
        let status = try queue.allocate(1, fill: 0xEE)
        try queue.offer([.readable(header, 8), .writable(data, 512), .writable(status, 1)])
        #expect(try serve(block))
        #expect(try memory.load(UInt8.self, at: status) == 1)
        #expect(try memory.read(at: data, count: 512) == [UInt8](repeating: 0x77, count: 512))
    }

    @Test(
        "a request without a writable status byte at its end is malformed",
        arguments: [
            [QueueDriver.Buffer.readable(0x4_0000, 16)],
            [.readable(0x4_0000, 16), .readable(0x4_1000, 1)],
            [.readable(0x4_0000, 16), .writable(0x4_1000, 512), .readable(0x4_2000, 1)],
            [.readable(0x4_0000, 16), .writable(0x4_1000, 0)],
        ])
    mutating func noStatus(buffers: [QueueDriver.Buffer]) throws {
        let block = try VirtioBlock(path: disk.path, readOnly: false)
        try memory.write(Self.header(type: 0, sector: 0), at: 0x4_0000)
        try queue.offer(buffers)
        #expect(throws: VirtqueueError.malformedRequest("virtio-blk request without a trailing status byte")) {
            try serve(block)
        }
        #expect(try queue.usedIndex == 0)
    }

    @Test("several requests are served in one call, in order")
    mutating func batch() throws {
        let block = try VirtioBlock(path: disk.path, readOnly: false)
        var statuses: [UInt64] = []
        var buffers: [UInt64] = []
        for sector in [4, 0, 7] as [UInt64] {
            let header = try queue.place(Self.header(type: 0, sector: sector))
            let data = try queue.allocate(512)
            let status = try queue.allocate(1, fill: 0xEE)
            try queue.offer([.readable(header, 16), .writable(data, 512), .writable(status, 1)])
            statuses.append(status)
            buffers.append(data)
        }
        #expect(try serve(block))
        #expect(try queue.usedIndex == 3)
        #expect(try statuses.map { try memory.load(UInt8.self, at: $0) } == [0, 0, 0])
        #expect(try memory.read(at: buffers[0], count: 512) == TemporaryDisk.pattern(2048..<2560))
        #expect(try memory.read(at: buffers[1], count: 512) == TemporaryDisk.pattern(0..<512))
        #expect(try memory.read(at: buffers[2], count: 512) == TemporaryDisk.pattern(3584..<4096))
        #expect(try !serve(block))
    }

    @Test("a malicious chain makes process throw the queue error")
    mutating func maliciousChain() throws {
        let block = try VirtioBlock(path: disk.path, readOnly: false)
        try queue.setDescriptor(0, address: 0x4_0000, length: 16, flags: QueueDriver.flagNext, next: 0)
        try queue.publish(0)
        #expect(throws: VirtqueueError.chainTooLong(head: 0)) { try serve(block) }
    }

    // MARK: - Configuration space

    @Test(
        "config space reports capacity in sectors, seg_max and blk_size",
        arguments: [(8 * 512, 8), (8 * 512 + 100, 8), (511, 0), (1 << 20, 2048)] as [(Int, UInt64)])
    func configSpace(size: Int, sectors: UInt64) throws {
        let disk = try TemporaryDisk(size: size)
        let block = try VirtioBlock(path: disk.path, readOnly: true)
        #expect(block.capacityBytes == sectors * 512)
        func read(_ offset: Int, _ count: Int) -> UInt64 {
            var bytes = [UInt8](repeating: 0xA5, count: count)
            bytes.withUnsafeMutableBytes { block.readConfig(offset: offset, data: $0) }
            return bytes.enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        }
        #expect(read(0, 8) == sectors)
        #expect(read(0, 4) == sectors & 0xFFFF_FFFF)
        #expect(read(4, 4) == sectors >> 32)
        #expect(read(12, 4) == 126)
        #expect(read(20, 4) == 512)
        #expect(read(0x100, 4) == 0)
    }

    @Test("the capacity shows at offset 0 of the device configuration in BAR 0")
    func configThroughTransport() throws {
        let block = try VirtioBlock(path: disk.path, readOnly: true)
        let pci = VirtioPCIDevice(
            device: block, memory: memory, barAddress: 0xFE00_0000, signaler: RecordingSignaler(), onError: { _ in })
        let driver = TransportDriver(device: pci)
        #expect(driver.read(TransportDriver.deviceConfig, 8) == 8)
        #expect(driver.read(TransportDriver.deviceConfig + 20, 4) == 512)
        #expect(
            driver.deviceFeatures() == VirtioFeature.version1 | VirtioFeature.eventIndex | 1 << 2 | 1 << 5 | 1 << 6 | 1
                << 9)
        #expect(pci.readConfig(offset: 0x02, count: 2) == 0x1042)
        #expect(pci.readConfig(offset: 0x08, count: 4) >> 8 == 0x01_8000)
        #expect(driver.negotiate(VirtioFeature.version1 | 1 << 5 | 1 << 9))
    }

    // MARK: - Opening images

    @Test("opening a directory fails with an error naming the path", arguments: [true, false])
    func openDirectory(readOnly: Bool) throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "vmtools-dir-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let error = #expect(throws: VirtioDeviceError.self) {
            _ = try VirtioBlock(path: directory.path, readOnly: readOnly)
        }
        #expect(error?.description.contains(directory.path) == true)
    }

    @Test("opening a missing path fails with an error naming the path and the reason")
    func openMissing() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent(
            "vmtools-missing-\(UUID().uuidString).img"
        ).path
        let error = #expect(throws: VirtioDeviceError.open(path: path, errno: ENOENT)) {
            _ = try VirtioBlock(path: path, readOnly: true)
        }
        #expect(error?.description.contains(path) == true)
        #expect(error?.description.contains("No such file") == true)
    }
}
