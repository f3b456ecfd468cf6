import GuestMemory
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// virtio-blk (type 2) backed by a raw image file, read-only or read-write.
///
/// Requests are served synchronously with pread/pwrite straight between the file and guest
/// memory. Sector ranges beyond the image, writes to a read-only disk and malformed requests
/// are answered with an error status; only a request that cannot even carry a status (no
/// writable byte) breaks the queue.
public final class VirtioBlock: VirtioDevice {
    static let sectorSize: UInt64 = 512
    static let featureSegMax: UInt64 = 1 << 2
    static let featureReadOnly: UInt64 = 1 << 5
    static let featureBlockSize: UInt64 = 1 << 6
    static let featureFlush: UInt64 = 1 << 9
    static let segMax: UInt32 = 126

    enum RequestType: UInt32 {
        case read = 0
        case write = 1
        case flush = 4
        case getID = 8
    }

    enum Status: UInt8 {
        case ok = 0
        case ioError = 1
        case unsupported = 2
    }

    public let path: String
    public let isReadOnly: Bool
    /// Image size in bytes (a partial last sector is not exposed).
    public let capacityBytes: UInt64
    private let fd: Int32

    /// Opens `path` as the disk image.
    public init(path: String, readOnly: Bool) throws(VirtioDeviceError) {
        let fd = open(path, (readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC)
        guard fd >= 0 else { throw .open(path: path, errno: errno) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            close(fd)
            throw .open(path: path, errno: errno)
        }
        let isFile = info.st_mode & S_IFMT == S_IFREG
        let isBlock = info.st_mode & S_IFMT == S_IFBLK
        guard isFile || isBlock else {
            close(fd)
            throw .notADisk(path: path)
        }
        var size = UInt64(info.st_size)
        if isBlock { size = UInt64(max(lseek(fd, 0, SEEK_END), 0)) }
        self.fd = fd
        self.path = path
        self.isReadOnly = readOnly
        self.capacityBytes = size / Self.sectorSize * Self.sectorSize
    }

    deinit { close(fd) }

    public var deviceType: UInt16 { 2 }
    public var pciClassCode: UInt32 { 0x01_8000 }
    public var features: UInt64 {
        Self.featureSegMax | Self.featureFlush | Self.featureBlockSize | (isReadOnly ? Self.featureReadOnly : 0)
    }
    public var queueMaxSizes: [UInt16] { [256] }

    public func readConfig(offset: Int, data: UnsafeMutableRawBufferPointer) {
        // struct virtio_blk_config: capacity (sectors) @0, size_max @8, seg_max @12, geometry @16, blk_size @20.
        var config = [UInt8](repeating: 0, count: 24)
        config.storeLE(capacityBytes / Self.sectorSize, at: 0)
        config.storeLE(Self.segMax, at: 12)
        config.storeLE(UInt32(Self.sectorSize), at: 20)
        for i in 0..<data.count { data[i] = offset + i < config.count ? config[offset + i] : 0 }
    }

    public func process(queue index: Int, _ queue: inout Virtqueue, memory: GuestMemory) throws(VirtqueueError) -> Bool
    {
        var completed = false
        while let chain = try queue.popChain(memory: memory) {
            let written = try serve(chain, memory: memory)
            try queue.pushUsed(head: chain.head, written: written, memory: memory)
            completed = true
        }
        return completed
    }

    /// Serves one request; returns the bytes written into guest buffers (data plus status).
    func serve(_ chain: DescriptorChain, memory: GuestMemory) throws(VirtqueueError) -> UInt32 {
        // The status byte is the last byte of the last writable buffer.
        guard let statusBuffer = chain.writable.last, statusBuffer.length >= 1, chain.buffers.last == statusBuffer
        else {
            throw .malformedRequest("virtio-blk request without a trailing status byte")
        }
        let statusAddress = statusBuffer.address + UInt64(statusBuffer.length) - 1
        var dataOut = chain.writable
        dataOut[dataOut.count - 1].length -= 1
        if dataOut.last?.length == 0 { dataOut.removeLast() }

        let header = try chain.readBytes(memory: memory, limit: 16)
        var status = Status.ok
        var written: UInt32 = 0
        if header.count < 16 {
            status = .ioError
        } else {
            let type = header.loadLE(UInt32.self, at: 0) ?? 0
            let sector = header.loadLE(UInt64.self, at: 8) ?? 0
            switch RequestType(rawValue: type) {
            case .read:
                (status, written) = transfer(dataOut, sector: sector, memory: memory, isWrite: false)
            case .write:
                (status, _) =
                    isReadOnly
                    ? (.ioError, 0)
                    : transfer(
                        DescriptorChain.trimmed(chain.readable, skipping: 16), sector: sector, memory: memory,
                        isWrite: true)
            case .flush:
                status = isReadOnly || fsync(fd) == 0 ? .ok : .ioError
            case .getID:
                let id = Array("vmtools-\(path.split(separator: "/").last ?? "disk")".utf8.prefix(20))
                var remaining = id[...]
                for buffer in dataOut where !remaining.isEmpty {
                    let chunk = remaining.prefix(Int(buffer.length))
                    do { try memory.write(chunk, at: buffer.address) } catch {
                        throw .bufferOutsideMemory(address: buffer.address, length: buffer.length)
                    }
                    written += UInt32(chunk.count)
                    remaining = remaining.dropFirst(chunk.count)
                }
            case nil:
                status = .unsupported
            }
        }
        do { try memory.store(status.rawValue, at: statusAddress) } catch {
            throw .bufferOutsideMemory(address: statusAddress, length: 1)
        }
        return written + 1
    }

    /// Moves data between the image at `sector` and `buffers`, refusing ranges past the end.
    private func transfer(_ buffers: [DescriptorChain.Buffer], sector: UInt64, memory: GuestMemory, isWrite: Bool) -> (
        Status, UInt32
    ) {
        let total = buffers.reduce(UInt64(0)) { $0 + UInt64($1.length) }
        let (start, overflow) = sector.multipliedReportingOverflow(by: Self.sectorSize)
        guard !overflow, start <= capacityBytes, total <= capacityBytes - start else { return (.ioError, 0) }
        var position = Int(start)
        var moved: UInt32 = 0
        for buffer in buffers {
            guard let host = try? memory.buffer(at: buffer.address, count: Int(buffer.length)) else {
                return (.ioError, moved)
            }
            var done = 0
            while done < host.count {
                let n =
                    isWrite
                    ? pwrite(fd, host.baseAddress! + done, host.count - done, position)
                    : pread(fd, host.baseAddress! + done, host.count - done, position)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { return (.ioError, moved) }
                done += n
                position += n
                if !isWrite { moved += UInt32(n) }
            }
        }
        return (.ok, moved)
    }
}

/// Why a virtio device's backend could not be opened.
public enum VirtioDeviceError: Error, Equatable, CustomStringConvertible {
    case open(path: String, errno: Int32)
    case notADisk(path: String)
    /// A device setting or its host side was refused; the text says which and why.
    case invalid(String)

    public var description: String {
        switch self {
        case .invalid(let why): return why
        case .open(let path, let code): return "cannot open the disk image \(path): \(String(cString: strerror(code)))"
        case .notADisk(let path): return "the disk image \(path) is neither a regular file nor a block device"
        }
    }
}
