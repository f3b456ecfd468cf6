#if canImport(Glibc)
    import Glibc
#endif

/// Why reading a frame failed.
public enum P9FrameError: Error, Equatable, Sendable {
    /// The descriptor failed with this errno.
    case transport(errno: Int32)
    /// The stream ended in the middle of a frame.
    case truncated
    /// size[4] is below 7 or above the limit.
    case badSize(UInt32, limit: UInt32)
}

/// Reads whole 9P frames from a stream: size[4] first, checked against the limit (the
/// negotiated msize) before anything else is read or allocated, then the rest.
public struct P9FrameReader: Sendable {
    public let fd: Int32

    public init(fd: Int32) { self.fd = fd }

    /// The next frame (size[4] included), or nil at a clean end of stream between frames.
    public func next(limit: UInt32) throws(P9FrameError) -> [UInt8]? {
        var sizeBytes = [UInt8](repeating: 0, count: 4)
        let got = try readFully(&sizeBytes, from: 0)
        if got == 0 { return nil }
        guard got == 4 else { throw .truncated }
        let size =
            UInt32(sizeBytes[0]) | UInt32(sizeBytes[1]) << 8 | UInt32(sizeBytes[2]) << 16
            | UInt32(sizeBytes[3]) << 24
        guard size >= UInt32(P9.headerSize), size <= limit else { throw .badSize(size, limit: limit) }
        var frame = [UInt8](repeating: 0, count: Int(size))
        frame[0..<4] = sizeBytes[0..<4]
        guard try readFully(&frame, from: 4) == Int(size) - 4 else { throw .truncated }
        return frame
    }

    /// Reads until `buffer[start...]` is full or the stream ends; returns the bytes read.
    private func readFully(_ buffer: inout [UInt8], from start: Int) throws(P9FrameError) -> Int {
        var filled = start
        while filled < buffer.count {
            let n = buffer.withUnsafeMutableBytes { raw in
                read(fd, raw.baseAddress.map { $0 + filled }, raw.count - filled)
            }
            if n == 0 { break }
            if n < 0 {
                if errno == EINTR { continue }
                throw .transport(errno: errno)
            }
            filled += n
        }
        return filled - start
    }
}

/// Writes `bytes` whole to `fd` (a socket without SIGPIPE, or any other descriptor); returns
/// 0, or the errno that stopped it.
public func p9WriteAll(_ fd: Int32, _ bytes: [UInt8]) -> Int32 {
    var sent = 0
    var isSocket = true
    while sent < bytes.count {
        let n = bytes.withUnsafeBytes { raw -> Int in
            let base = raw.baseAddress.map { $0 + sent }
            if isSocket { return send(fd, base, raw.count - sent, Int32(MSG_NOSIGNAL)) }
            return write(fd, base, raw.count - sent)
        }
        if n < 0 {
            if errno == EINTR { continue }
            if errno == ENOTSOCK && isSocket {
                isSocket = false
                continue
            }
            return errno
        }
        sent += n
    }
    return 0
}
