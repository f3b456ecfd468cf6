#if canImport(Glibc)
    import Glibc
#endif

/// A descriptor a proxy holds for the other side: a connection to a channel's socket, or the
/// local end standing in for a descriptor the other side received (a socketpair's or pipe's
/// end). Touched only on the link's loop thread.
final class MojoLocal: @unchecked Sendable {
    /// What the proxy does with the descriptor.
    enum Role {
        /// A socket: bytes (and descriptors) both ways; `kind` is its socket type.
        case socket(FileKind)
        /// The proxy reads it and sends what it reads (a pipe's read end).
        case reads
        /// The proxy writes what arrives into it (a pipe's write end).
        case writes
    }

    /// Bytes waiting to be written into the descriptor, with the descriptors to pass along with
    /// their first byte.
    struct Pending {
        var bytes: [UInt8]
        var offset = 0
        var fds: [Int32]
    }

    let handle: Int64
    let fd: Int32
    let role: Role
    /// Bytes this proxy may still send for it before the other side credits more.
    var window: Int
    /// What the other side sent, not yet written into `fd`.
    var pending: [Pending] = []
    var pendingBytes = 0
    /// Bytes written into `fd` since the last Credit was sent.
    var uncredited = 0
    /// The other side closed it: close once `pending` is written.
    var closing = false
    /// Reading is held back (no window, or the link's queue is full).
    var readPaused = false
    /// A stream socket's half-close: its reader saw end of stream (and the other side was
    /// told), and the other side's end of stream arrived (`fd` is shut down for writing once
    /// `pending` is written).
    var readEnded = false
    var writeEndRequested = false
    var writeEnded = false

    /// Stream sockets close one direction at a time; other descriptors close whole.
    var halfCloses: Bool {
        if case .socket(.streamSocket) = role { return true }
        return false
    }

    init(handle: Int64, fd: Int32, role: Role, window: Int) {
        self.handle = handle
        self.fd = fd
        self.role = role
        self.window = window
    }

    var readsFromFD: Bool {
        if case .writes = role { return false }
        return true
    }

    var writesToFD: Bool {
        if case .reads = role { return false }
        return true
    }

    /// Closes every descriptor it still holds (the fd and those waiting to be passed).
    func closeAll() {
        for entry in pending { for fd in entry.fds { close(fd) } }
        pending = []
        close(fd)
    }
}
