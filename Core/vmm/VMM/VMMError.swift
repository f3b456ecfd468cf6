#if canImport(Glibc)
    import Glibc
#endif

/// A VM that could not be built or run, with what failed in words a user can act on.
public struct VMMError: Error, CustomStringConvertible {
    public let description: String

    public init(_ description: String) { self.description = description }

    /// A file that could not be read.
    static func file(_ what: String, _ path: String, errno code: Int32) -> VMMError {
        VMMError("cannot read the \(what) \(path): \(String(cString: strerror(code)))")
    }
}

/// Reads a whole file, naming it (as `what`) in the error.
func readFile(_ path: String, what: String) throws(VMMError) -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw .file(what, path, errno: errno) }
    defer { close(fd) }
    var info = stat()
    guard fstat(fd, &info) == 0 else { throw .file(what, path, errno: errno) }
    guard info.st_mode & S_IFMT == S_IFREG else { throw VMMError("the \(what) \(path) is not a regular file") }
    var bytes = [UInt8](repeating: 0, count: Int(info.st_size))
    var done = 0
    while done < bytes.count {
        let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + done, $0.count - done) }
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else { throw .file(what, path, errno: n < 0 ? errno : EIO) }
        done += n
    }
    return bytes
}
