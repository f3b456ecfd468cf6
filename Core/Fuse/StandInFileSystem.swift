import CLinux
import EventLoop
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Serves the contents of a ``StandInFileSystem``'s files, which live elsewhere (for mojo-proxy:
/// behind the other end of a VM's vsock). Calls arrive on the file system's thread and must not
/// block it; each `reply` is called once, from any thread.
public protocol StandInBackend: AnyObject, Sendable {
    func read(_ id: Int64, offset: UInt64, count: Int, reply: @escaping @Sendable (Result<[UInt8], FuseErrno>) -> Void)
    func write(_ id: Int64, offset: UInt64, bytes: [UInt8], reply: @escaping @Sendable (Result<Int, FuseErrno>) -> Void)
    func size(_ id: Int64, reply: @escaping @Sendable (Result<UInt64, FuseErrno>) -> Void)
    func truncate(_ id: Int64, length: UInt64, reply: @escaping @Sendable (Result<Void, FuseErrno>) -> Void)
    /// The last descriptor open on file `id` was closed: it is gone from the file system.
    func released(_ id: Int64)
}

/// A flat FUSE file system of stand-in files. Each file stands for a regular file that another
/// process owns; opening it gives a real descriptor (pread, pwrite, fstat, ftruncate and lseek
/// work) whose I/O the ``StandInBackend`` serves. ARCVM's mojo proxy passes files across a VM
/// boundary the same way. The files are opened with direct I/O, never cached here, so every read
/// sees the owner's current contents.
public final class StandInFileSystem: Sendable {
    struct File {
        let id: Int64
        let name: String
        var size: UInt64
        let writable: Bool
    }

    struct State {
        var files: [UInt64: File] = [:]
        var nodes: [String: UInt64] = [:]
        var nextNode: UInt64 = 2  // FUSE_ROOT_ID is 1
        var backend: StandInBackend?
    }

    /// The largest read or write the kernel sends in one request.
    public let maxIO: Int
    /// Where the file system is mounted.
    public var mountPoint: String { channel.mountPoint }

    let channel: FuseChannel
    let state: Mutex<State>
    let stopEvent: EventFD
    private let thread: Mutex<HostThread?> = Mutex(nil)

    /// Mounts a new, empty file system at `directory` (root or CAP_SYS_ADMIN is needed) and starts
    /// the thread that serves it.
    public init(mountingAt directory: String, backend: StandInBackend, maxIO: Int) throws(FuseError) {
        self.maxIO = maxIO
        channel = try FuseChannel.mount(at: directory)
        state = Mutex(State(backend: backend))
        do {
            stopEvent = try EventFD()
            let started = try HostThread(name: "fuse-stand-ins") { [self] in serve() }
            thread.withLock { $0 = started }
        } catch {
            channel.unmount()
            channel.close()
            throw .system("starting the FUSE thread", errno: EAGAIN)
        }
    }

    /// Adds the stand-in for `id`, a file of `size` bytes; returns the path to open it by.
    public func add(_ id: Int64, size: UInt64, writable: Bool) -> String {
        let name = String(id)
        state.withLock { state in
            let node = state.nextNode
            state.nextNode += 1
            state.files[node] = File(id: id, name: name, size: size, writable: writable)
            state.nodes[name] = node
        }
        return mountPoint + "/" + name
    }

    /// Unmounts and stops serving: descriptors still open into the file system fail from now on.
    public func stop() {
        guard
            let running = thread.withLock({ thread -> HostThread? in
                defer { thread = nil }
                return thread
            })
        else {
            return
        }
        state.withLock { $0.backend = nil }
        channel.unmount()
        stopEvent.signal()
        running.join()
    }

    // MARK: - The serving thread

    private func serve() {
        var buffer = [UInt8](repeating: 0, count: max(Int(FUSE_MIN_READ_BUFFER), maxIO + 64 * 1024))
        var polled = [
            pollfd(fd: channel.fd, events: Int16(POLLIN), revents: 0),
            pollfd(fd: stopEvent.fd, events: Int16(POLLIN), revents: 0),
        ]
        while true {
            guard poll(&polled, 2, -1) >= 0 || errno == EINTR else { break }
            if polled[1].revents != 0 { break }
            guard polled[0].revents != 0 else { continue }
            let n = buffer.withUnsafeMutableBytes { read(channel.fd, $0.baseAddress, $0.count) }
            if n < 0, errno == EAGAIN || errno == EINTR || errno == ENOENT { continue }
            guard n > 0 else { break }  // ENODEV: unmounted
            if let request = FuseRequest(buffer[0..<n]) { handle(request) }
        }
        channel.close()
    }

    // MARK: - Files

    func file(_ node: UInt64) -> File? { state.withLock { $0.files[node] } }

    var backend: StandInBackend? { state.withLock { $0.backend } }

    func attributes(node: UInt64, size: UInt64, writable: Bool) -> fuse_attr {
        var attr = fuse_attr()
        attr.ino = node
        attr.size = size
        attr.blocks = (size + 511) / 512
        attr.mode = UInt32(Glibc.S_IFREG) | (writable ? 0o600 : 0o400)
        attr.nlink = 1
        attr.uid = getuid()
        attr.gid = getgid()
        attr.blksize = 4096
        return attr
    }

    func rootAttributes() -> fuse_attr {
        var attr = fuse_attr()
        attr.ino = UInt64(FUSE_ROOT_ID)
        attr.mode = UInt32(Glibc.S_IFDIR) | 0o700
        attr.nlink = 2
        attr.uid = getuid()
        attr.gid = getgid()
        attr.blksize = 4096
        return attr
    }

    /// Records a size the backend reported or set.
    func updateSize(_ node: UInt64, _ size: UInt64) {
        state.withLock { state in state.files[node]?.size = size }
    }
}
