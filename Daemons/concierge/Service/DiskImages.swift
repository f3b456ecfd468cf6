import CLinux
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Raw, sparse disk images under `<state>/disks/<name>.img`: made empty at a size, or as a copy
/// of an image's root disk (holes stay holes), listed, and destroyed.
public struct DiskImages: Sendable {
    public let folder: String
    public let imagesFolder: String

    public init(config: ConciergeConfiguration) {
        folder = config.disksDirectory
        imagesFolder = config.imagesDirectory
    }

    public struct Disk: Sendable, Equatable {
        public var name: String
        public var path: String
        public var sizeBytes: UInt64
        /// What the file takes on disk (it is sparse).
        public var allocatedBytes: UInt64
    }

    public func path(of name: String) -> String { "\(folder)/\(name).img" }

    /// Makes disk `name` of `sizeBytes` (at least the source's size when copying
    /// `fromImage`'s rootfs.img). Returns its path.
    public func create(_ name: String, sizeBytes: UInt64, fromImage image: String? = nil) throws(ConciergeError)
        -> String
    {
        guard VMOptions.validName(name) else {
            throw .invalid("disk name '\(name)' must be 1–32 letters, digits, '-' or '_'")
        }
        guard sizeBytes > 0 || image != nil, sizeBytes <= 1 << 44 else {
            throw .invalid("size_bytes \(sizeBytes) must be 1 byte to 16 TiB (or 0 with from_image)")
        }
        let target = path(of: name)
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        } catch {
            throw .failed("creating \(folder): \(error)")
        }
        var source: Int32 = -1
        if let image {
            guard VMOptions.validName(image) else { throw .invalid("image name '\(image)' is not a plain name") }
            let rootfs = "\(imagesFolder)/\(image)/rootfs.img"
            source = open(rootfs, O_RDONLY | O_CLOEXEC)
            guard source >= 0 else {
                throw .init(.notFound, "image \(image) has no root disk (\(rootfs)); build it with --rootfs")
            }
        }
        defer { if source >= 0 { close(source) } }
        // O_EXCL: an existing disk is never overwritten.
        let fd = open(target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            if errno == EEXIST { throw .init(.alreadyExists, "disk \(name) already exists (\(target))") }
            throw .failed("creating \(target): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        do {
            var size = sizeBytes
            if source >= 0 {
                var info = stat()
                fstat(source, &info)
                size = max(size, UInt64(info.st_size))
                try Self.copySparse(from: source, to: fd, length: Int64(info.st_size))
            }
            guard ftruncate(fd, off_t(size)) == 0 else {
                throw ConciergeError.failed("sizing \(target): \(Self.lastError)")
            }
            guard fsync(fd) == 0 else { throw ConciergeError.failed("syncing \(target): \(Self.lastError)") }
        } catch {
            unlink(target)
            throw error as? ConciergeError ?? .failed("\(error)")
        }
        return target
    }

    public func destroy(_ name: String) throws(ConciergeError) {
        guard VMOptions.validName(name) else { throw .invalid("disk name '\(name)' is not a plain name") }
        guard unlink(path(of: name)) == 0 else {
            if errno == ENOENT { throw .init(.notFound, "no disk named \(name)") }
            throw .failed("removing \(path(of: name)): \(Self.lastError)")
        }
    }

    public func list() throws(ConciergeError) -> [Disk] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return [] }
        return names.filter { $0.hasSuffix(".img") }.sorted().compactMap { file in
            var info = stat()
            guard stat("\(folder)/\(file)", &info) == 0 else { return nil }
            return Disk(
                name: String(file.dropLast(4)), path: "\(folder)/\(file)", sizeBytes: UInt64(info.st_size),
                allocatedBytes: UInt64(info.st_blocks) * 512)
        }
    }

    /// Copies the data regions of `source` (SEEK_DATA/SEEK_HOLE), leaving its holes as holes.
    static func copySparse(from source: Int32, to target: Int32, length: Int64) throws(ConciergeError) {
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var offset: Int64 = 0
        while offset < length {
            let data = Int64(lseek(source, off_t(offset), CLINUX_SEEK_DATA))
            if data < 0 { break }  // ENXIO: only a hole is left
            var end = Int64(lseek(source, off_t(data), CLINUX_SEEK_HOLE))
            if end < 0 { end = length }
            var at = data
            while at < end {
                let n = pread(source, &buffer, min(buffer.count, Int(end - at)), off_t(at))
                guard n > 0 else { throw .failed("reading the source image: \(lastError)") }
                guard pwrite(target, buffer, n, off_t(at)) == n else { throw .failed("writing the disk: \(lastError)") }
                at += Int64(n)
            }
            offset = end
        }
    }

    static var lastError: String { String(cString: strerror(errno)) }
}
