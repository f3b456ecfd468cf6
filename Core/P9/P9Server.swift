import CP9System
import EventLoop

#if canImport(Glibc)
    import Glibc
#endif

/// Why a server could not be created.
public enum P9ServerError: Error, Equatable, CustomStringConvertible {
    /// The export root could not be opened.
    case cannotOpenRoot(String, errno: Int32)

    public var description: String {
        switch self {
        case .cannotOpenRoot(let path, let errno):
            return "9P: cannot open export root \(path): \(String(cString: strerror(errno)))"
        }
    }
}

/// How a session ended (``P9Server/serve(fd:)``'s result).
public enum P9SessionEnd: Equatable, Sendable, CustomStringConvertible {
    /// The client closed its end.
    case closed
    /// Reading or writing the transport failed with this errno.
    case transportError(errno: Int32)
    /// The client broke framing (size out of bounds, a tag reused while in flight, ...); the
    /// session was ended without a reply.
    case protocolError(String)

    public var description: String {
        switch self {
        case .closed: return "closed by the client"
        case .transportError(let errno): return "transport error: \(String(cString: strerror(errno)))"
        case .protocolError(let why): return "protocol error: \(why)"
        }
    }
}

/// A 9P2000.L file server for one exported directory.
///
/// One server serves any number of connections (each ``serve(fd:)`` call is one session with
/// its own fids); every path a client names is resolved beneath the export root, which the
/// server opens once at creation (see P9FileSystem.swift for how confinement works). With
/// `readOnly`, every operation that would change the export fails with EROFS.
///
/// Linux guests mount it with
/// `mount -t 9p -o trans=fd,rfdno=N,wfdno=N,version=9p2000.L,cache=none,access=any tag /mnt`
/// (or `trans=unix`, or virtio/vsock through the VMM). The server needs /proc mounted: it opens
/// files for I/O through /proc/self/fd of their O_PATH descriptors.
public final class P9Server: Sendable {
    /// Settings of a server.
    public struct Configuration: Sendable {
        /// The directory to export.
        public var root: String
        /// Refuse every change with EROFS.
        public var readOnly: Bool
        /// If set, Tattach's aname must be empty or equal to it (ENOENT otherwise); if nil,
        /// aname is ignored.
        public var exportName: String?
        /// The largest msize the server agrees to in Tversion (the client may ask for less).
        public var maxMessageSize: UInt32
        /// Requests of one session served at once (each by its own worker thread); the reader
        /// stops reading while this many are in flight.
        public var maxInFlight: Int
        /// Fids one session may hold (each holds an O_PATH descriptor); beyond it: ENFILE.
        public var maxFids: Int
        /// Bytes one session may hold in xattr buffers (each value is at most 64 KiB).
        public var maxXattrBytes: Int
        /// Guest ↔ host id mapping.
        public var idMapping: P9IDMapping
        /// Whether set-user-ID and set-group-ID bits a client asks for (create, mkdir, mknod,
        /// chmod) reach the host. Off, they are dropped: a guest cannot plant a set-ID program in
        /// a host folder (what systemd's RestrictSUIDSGID does, which also takes openat2 away).
        public var allowsSetID: Bool
        /// Tests only: runs on the worker thread before each queued request is handled (to make
        /// an operation slow, or hold it until a flush arrives).
        var beforeHandling: (@Sendable (P9Request) -> Void)? = nil

        public init(
            root: String, readOnly: Bool = false, exportName: String? = nil, maxMessageSize: UInt32 = 1 << 20,
            maxInFlight: Int = 8, maxFids: Int = 16384, maxXattrBytes: Int = 1 << 20,
            idMapping: P9IDMapping = .identity, allowsSetID: Bool = true
        ) {
            self.root = root
            self.readOnly = readOnly
            self.exportName = exportName
            self.maxMessageSize = max(maxMessageSize, P9.minimumMessageSize)
            self.maxInFlight = max(1, maxInFlight)
            self.maxFids = max(1, maxFids)
            self.maxXattrBytes = maxXattrBytes
            self.idMapping = idMapping
            self.allowsSetID = allowsSetID
        }
    }

    public let configuration: Configuration
    /// The export root, O_PATH.
    let root: Descriptor
    let rootStat: HostStat

    /// Opens the export root `configuration.root` (a directory; a symlink to one is followed
    /// here, once, by the daemon's choice of path).
    public init(configuration: Configuration) throws(P9ServerError) {
        self.configuration = configuration
        let fd = open(configuration.root, P9SYS_O_PATH | P9SYS_O_DIRECTORY | P9SYS_O_CLOEXEC)
        guard fd >= 0 else { throw .cannotOpenRoot(configuration.root, errno: errno) }
        root = Descriptor(fd)
        do { rootStat = try root.stat() } catch { throw .cannotOpenRoot(configuration.root, errno: error.code) }
    }

    /// Shorthand for ``init(configuration:)``.
    public convenience init(root: String, readOnly: Bool = false) throws(P9ServerError) {
        try self.init(configuration: Configuration(root: root, readOnly: readOnly))
    }

    /// Serves one session on `fd`, a connected stream (Unix socket, socketpair, vsock stream
    /// or pipe-like descriptor), and returns when the client closes it or breaks the protocol.
    /// Blocks the calling thread (requests run on up to `maxInFlight` worker threads of the
    /// session, which all end before this returns). `fd` is not closed; to end a session from
    /// outside, `shutdown(fd, SHUT_RDWR)` it.
    @discardableResult
    public func serve(fd: Int32) -> P9SessionEnd {
        P9Session(server: self, fd: fd).run()
    }

    /// Runs ``serve(fd:)`` on a new thread named `p9-session`; `done` gets how it ended.
    /// `fd` is closed after the session ends when `closeWhenDone` is set.
    public func serveInBackground(
        fd: Int32, closeWhenDone: Bool = true, done: @escaping @Sendable (P9SessionEnd) -> Void = { _ in }
    ) throws {
        try HostThread.detached(name: "p9-session") {
            let end = self.serve(fd: fd)
            if closeWhenDone { close(fd) }
            done(end)
        }
    }
}
