import GRPCCore

#if canImport(Glibc)
    import Glibc
#endif

/// Small whole-file reads and writes with plain system calls.
enum FileText {
    /// Replaces the file's contents (through a temporary file and rename, so readers never see
    /// half of it).
    static func write(_ text: String, to path: String, mode: mode_t = 0o644) throws(RPCError) {
        let temporary = path + ".maitred-new"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw AgentError.system("creating \(temporary)", errno: errno) }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        let writeErrno = errno
        close(fd)
        guard written == bytes.count else {
            unlink(temporary)
            throw AgentError.system("writing \(temporary)", errno: written < 0 ? writeErrno : EIO)
        }
        guard rename(temporary, path) == 0 else {
            throw AgentError.system("renaming \(temporary) to \(path)", errno: errno)
        }
    }

    /// The file's text, or nil when it cannot be read.
    static func read(_ path: String, limit: Int = 1 << 20) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while bytes.count < limit {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            bytes += chunk.prefix(n)
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
