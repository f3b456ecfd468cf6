import CLinux
import EventLoop

#if canImport(Glibc)
    import Glibc
#endif

/// Why a FUSE file system could not be mounted or served, naming the call that failed.
public enum FuseError: Error, Equatable, CustomStringConvertible {
    case system(String, errno: Int32)

    public var description: String {
        switch self {
        case .system(let call, let code): return "\(call) failed: \(String(cString: strerror(code)))"
        }
    }
}

/// The errno a FUSE request is answered with.
public struct FuseErrno: Error, Equatable, Sendable {
    public let code: Int32
    public init(_ code: Int32) { self.code = code }
}

/// One request the kernel sent: its header and the opcode's arguments after it.
struct FuseRequest {
    let header: fuse_in_header
    let body: ArraySlice<UInt8>

    /// Splits one read of /dev/fuse; nil when it is shorter than its own header says.
    init?(_ bytes: ArraySlice<UInt8>) {
        let headerSize = MemoryLayout<fuse_in_header>.size
        guard bytes.count >= headerSize else { return nil }
        let header = bytes.withUnsafeBytes { $0.loadUnaligned(as: fuse_in_header.self) }
        guard Int(header.len) == bytes.count else { return nil }
        self.header = header
        body = bytes.dropFirst(headerSize)
    }

    var opcode: UInt32 { header.opcode }
    var unique: UInt64 { header.unique }
    var node: UInt64 { header.nodeid }

    /// The opcode's fixed argument structure at the start of the body; nil when it is short.
    func arguments<T>(_: T.Type) -> T? {
        guard body.count >= MemoryLayout<T>.size else { return nil }
        return body.withUnsafeBytes { $0.loadUnaligned(as: T.self) }
    }

    /// The bytes after the opcode's argument structure (WRITE's data, LOOKUP's name).
    func trailing<T>(after _: T.Type) -> ArraySlice<UInt8> {
        body.dropFirst(MemoryLayout<T>.size)
    }
}

/// /dev/fuse opened and mounted at a directory: the kernel's requests are read from it and
/// answered by writing replies, from any thread.
final class FuseChannel: Sendable {
    let fd: Int32
    let mountPoint: String

    /// Opens /dev/fuse and mounts it at `mountPoint` (an existing directory), as root or with
    /// CAP_SYS_ADMIN. Other users may use descriptors opened in it (allow_other): the files are
    /// only ever reached through descriptors the proxy passes.
    static func mount(at mountPoint: String) throws(FuseError) -> FuseChannel {
        let fd = open("/dev/fuse", O_RDWR | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw .system("open /dev/fuse", errno: errno) }
        let options = "fd=\(fd),rootmode=40000,user_id=\(getuid()),group_id=\(getgid()),allow_other"
        guard
            Glibc.mount(
                "mojo-proxy", mountPoint, "fuse", UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC), options) == 0
        else {
            let code = errno
            Glibc.close(fd)
            throw .system("mount fuse at \(mountPoint)", errno: code)
        }
        return FuseChannel(fd: fd, mountPoint: mountPoint)
    }

    private init(fd: Int32, mountPoint: String) {
        self.fd = fd
        self.mountPoint = mountPoint
    }

    /// Answers request `unique` with `error` (a positive errno) or, when 0, with `body`.
    func reply(_ unique: UInt64, error: Int32 = 0, body: [UInt8] = []) {
        var header = fuse_out_header()
        header.unique = unique
        header.error = -error
        let payload = error == 0 ? body : []
        header.len = UInt32(MemoryLayout<fuse_out_header>.size + payload.count)
        var message = Self.bytes(of: header)
        message += payload
        // ENOENT: the request was interrupted and is gone; nothing else is expected here.
        _ = message.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    }

    /// Answers request `unique` with the bytes of `value`.
    func reply<T>(_ unique: UInt64, with value: T) {
        reply(unique, body: Self.bytes(of: value))
    }

    /// Detaches the mount; descriptors still open into it keep working until ``close()``.
    func unmount() {
        umount2(mountPoint, Int32(MNT_DETACH))
    }

    /// Closes /dev/fuse: the kernel aborts the connection, and descriptors still open into the
    /// file system fail (ENOTCONN) from then on. Only the thread that reads the channel calls it.
    func close() {
        Glibc.close(fd)
    }

    static func bytes<T>(of value: T) -> [UInt8] {
        withUnsafeBytes(of: value) { Array($0) }
    }
}
