import X86

#if canImport(Glibc)
    import Glibc
#endif

/// A kernel or initrd file, read with pread straight into guest memory.
final class FileImage: ImageSource {
    let path: String
    let byteCount: Int
    private let fd: Int32

    /// Opens `path`; `what` names it in errors ("kernel", "initrd").
    init(path: String, what: String) throws(VMMError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .file(what, path, errno: errno) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let code = errno
            close(fd)
            throw .file(what, path, errno: code)
        }
        guard info.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            throw VMMError("the \(what) \(path) is not a regular file")
        }
        self.fd = fd
        self.path = path
        self.byteCount = Int(info.st_size)
    }

    deinit { close(fd) }

    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws {
        var done = 0
        while done < buffer.count {
            let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, offset + done)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw VMMError.file("image", path, errno: n < 0 ? errno : EIO) }
            done += n
        }
    }
}
