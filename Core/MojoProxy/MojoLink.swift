import CLinux
import EventLoop
import Fuse
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// One end of the link between the guest's and the host's mojo-proxy (ARCVM's mojo proxy, over
/// vsock and with numbered channels). The guest end listens on each channel's guest socket and
/// asks the host end to connect each client to that channel's host socket; from then on bytes
/// and passed descriptors flow both ways as Data messages. Descriptors are recreated on the
/// receiving side (a socketpair or pipe whose other end the proxy pumps).
///
/// Everything runs on one event-loop thread; flow control is per handle (a window of
/// unacknowledged bytes, refilled by Credit) and per link (local sockets are not read while
/// the link's outgoing queue is long), so a slow reader never makes a proxy buffer without bound.
public final class MojoLink: @unchecked Sendable {
    public enum Side: Sendable { case host, guest }

    /// Bytes a handle may have in flight before the receiver credits them.
    public static let window = 1 << 20
    /// The link's outgoing queue beyond which local sockets are not read, and below which they are again.
    static let outgoingHigh = 4 << 20
    static let outgoingLow = 1 << 20

    let side: Side
    let link: Int32
    let loop: EventLoop
    /// Channel number → socket path: the host's sockets to connect to, or the guest's to listen on.
    let channels: [UInt32: String]
    let log: @Sendable (String) -> Void
    /// Where the stand-in file system for regular files the other side passes is mounted (in a
    /// new directory beneath it); nil: such files are refused.
    let filesDirectory: String?
    private let endedState = Mutex<(reason: String?, waiters: [CheckedContinuation<String, Never>])>((nil, []))

    // Loop-thread state.
    var listeners: [Int32: UInt32] = [:]
    var locals: [Int64: MojoLocal] = [:]
    var localsByFD: [Int32: Int64] = [:]
    /// Guest: clients accepted, waiting for the host's ConnectResponse, by cookie.
    var pendingConnects: [Int64: Int32] = [:]
    var nextID: Int64
    var reader = MojoFrameReader()
    var outgoing: [UInt8] = []
    var outgoingOffset = 0
    var linkWritable = true
    var helloReceived = false
    var linkEnded = false
    /// Regular files a local process sent, served to the other side by handle (MojoLink+Files).
    var servedFiles: [Int64: Int32] = [:]
    /// File requests sent for our stand-ins, waiting on their answers, by cookie.
    var fileRequests: [Int64: PendingFileRequest] = [:]
    var standIns: StandInFileSystem?

    /// Work other threads hand to the loop thread (the stand-in file system's requests).
    private let inbox = Mutex<[@Sendable () -> Void]>([])
    private let inboxEvent: EventFD

    /// A link over `link` (a connected stream: vsock, or a socketpair in tests), which it owns.
    public init(
        side: Side, link: Int32, channels: [UInt32: String], filesDirectory: String? = nil,
        log: @escaping @Sendable (String) -> Void = { _ in }
    )
        throws(MojoLinkError)
    {
        self.side = side
        self.link = link
        self.channels = channels
        self.filesDirectory = filesDirectory
        self.log = log
        nextID = side == .host ? 1 : -1
        do {
            loop = try EventLoop(name: "mojo-link")
            inboxEvent = try EventFD()
        } catch { throw .setup("the event loop: \(error)") }
        _ = fcntl(link, F_SETFL, fcntl(link, F_GETFL) | O_NONBLOCK)
    }

    /// Starts the loop: sends Hello, and on the guest side listens on every channel's socket.
    public func start() throws(MojoLinkError) {
        if side == .guest {
            for (channel, path) in channels.sorted(by: { $0.key < $1.key }) {
                let fd: Int32
                do { fd = try UnixSocket.listen(at: path, mode: 0o666) } catch {
                    throw .setup("channel \(channel): \(error)")
                }
                listeners[fd] = channel
                do {
                    try loop.add(fd) { [self] in
                        acceptClient(fd, channel: channel)
                        return .keep
                    }
                } catch { throw .setup("watching \(path): \(error)") }
            }
        }
        var hello = Vmtools_Mojo_Message()
        hello.hello.version = MojoFrame.version
        send(hello)
        do {
            try loop.add(link, interest: .readable) { [self] readiness in linkReady(readiness) }
            try loop.add(inboxEvent.fd) { [self] in
                inboxEvent.drain()
                for work in inbox.withLock({ work in
                    defer { work = [] }
                    return work
                }) { work() }
                return .keep
            }
            try loop.start()
        } catch { throw .setup("starting the loop: \(error)") }
    }

    /// Ends the link: every proxied descriptor and listener is closed.
    public func stop() {
        loop.stop()
        end("stopped")
    }

    /// Waits until the link ends; returns why.
    public func ended() async -> String {
        await withCheckedContinuation { continuation in
            let reason = endedState.withLock { state -> String? in
                if let reason = state.reason { return reason }
                state.waiters.append(continuation)
                return nil
            }
            if let reason { continuation.resume(returning: reason) }
        }
    }

    /// Handles and listeners open, for tests of cleanup.
    public var openCount: Int { locals.count + pendingConnects.count + servedFiles.count }

    /// Runs `work` on the loop thread.
    func onLoop(_ work: @escaping @Sendable () -> Void) {
        inbox.withLock { $0.append(work) }
        inboxEvent.signal()
    }

    // MARK: - Handles

    func allocateID() -> Int64 {
        defer { nextID += side == .host ? 1 : -1 }
        return nextID
    }

    /// Whether `handle` is one the other side allocates.
    func isPeerHandle(_ handle: Int64) -> Bool { side == .host ? handle < 0 : handle > 0 }

    func register(_ local: MojoLocal) {
        locals[local.handle] = local
        localsByFD[local.fd] = local.handle
        _ = fcntl(local.fd, F_SETFL, fcntl(local.fd, F_GETFL) | O_NONBLOCK)
        do {
            try loop.add(local.fd, interest: interest(of: local)) { [self] readiness in
                localReady(local, readiness)
            }
        } catch {
            log("cannot watch handle \(local.handle): \(error)")
            drop(local, error: EMFILE)
        }
    }

    func interest(of local: MojoLocal) -> EventLoop.Interest {
        var interest: EventLoop.Interest = []
        if local.readsFromFD, !local.readPaused, !local.closing, !local.readEnded { interest.insert(.readable) }
        if !local.pending.isEmpty { interest.insert(.writable) }
        return interest
    }

    func updateInterest(_ local: MojoLocal) {
        guard locals[local.handle] === local else { return }
        loop.setInterest(local.fd, interest(of: local))
    }

    /// Forgets `local` and closes it; tells the other side unless it is the one that closed.
    func drop(_ local: MojoLocal, error: Int32 = 0, tellPeer: Bool = true) {
        guard locals[local.handle] === local else { return }
        loop.remove(local.fd)
        locals[local.handle] = nil
        localsByFD[local.fd] = nil
        local.closeAll()
        if tellPeer {
            var close = Vmtools_Mojo_Message()
            close.close.handle = local.handle
            close.close.errorCode = error
            send(close)
        }
    }

    // MARK: - The link

    /// Queues `message` for the other proxy.
    func send(_ message: Vmtools_Mojo_Message) {
        do { outgoing += try MojoFrame.encode(message) } catch {
            log("cannot encode a message: \(error)")
            return
        }
        flushLink()
    }

    func flushLink() {
        while outgoingOffset < outgoing.count {
            let n = outgoing.withUnsafeBytes {
                Glibc.send(link, $0.baseAddress! + outgoingOffset, outgoing.count - outgoingOffset, Int32(MSG_NOSIGNAL))
            }
            if n > 0 {
                outgoingOffset += n
                continue
            }
            if n < 0, errno == EINTR { continue }
            if n < 0, errno == EAGAIN || errno == EWOULDBLOCK {
                if linkWritable {
                    linkWritable = false
                    loop.setInterest(link, [.readable, .writable])
                }
                return
            }
            end("writing to the other proxy: \(String(cString: strerror(errno)))")
            return
        }
        outgoing.removeAll(keepingCapacity: outgoing.count < Self.outgoingHigh)
        outgoingOffset = 0
        if !linkWritable {
            linkWritable = true
            loop.setInterest(link, .readable)
        }
        resumeLocalsIfDrained()
    }

    var outgoingLength: Int { outgoing.count - outgoingOffset }

    func resumeLocalsIfDrained() {
        guard outgoingLength < Self.outgoingLow else { return }
        for local in locals.values where local.readPaused && local.window > 0 {
            local.readPaused = false
            updateInterest(local)
        }
    }

    private func linkReady(_ readiness: EventLoop.Readiness) -> EventLoop.Next {
        if readiness.contains(.writable) { flushLink() }
        guard readiness.contains(.readable) || readiness.contains(.hangUp) || readiness.contains(.error) else {
            return .keep
        }
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        let n = buffer.withUnsafeMutableBytes { recv(link, $0.baseAddress, $0.count, 0) }
        if n < 0, errno == EAGAIN || errno == EINTR { return .keep }
        guard n > 0 else {
            end(n == 0 ? "the other proxy closed the link" : "reading the link: \(String(cString: strerror(errno)))")
            return .remove
        }
        reader.append(buffer[0..<n])
        do {
            while let message = try reader.next() {
                try handle(message)
                if endedState.withLock({ $0.reason != nil }) { return .remove }
            }
        } catch {
            end("the other proxy broke the protocol: \(error)")
            return .remove
        }
        return .keep
    }

    /// Ends the link once: closes everything and wakes ``ended()``.
    func end(_ reason: String) {
        let waiters = endedState.withLock { state -> [CheckedContinuation<String, Never>]? in
            guard state.reason == nil else { return nil }
            state.reason = reason
            defer { state.waiters = [] }
            return state.waiters
        }
        guard let waiters else { return }
        log("link ended: \(reason)")
        linkEnded = true
        loop.remove(link)
        close(link)
        for local in Array(locals.values) { drop(local, tellPeer: false) }
        for (_, fd) in servedFiles { close(fd) }
        servedFiles = [:]
        stopStandIns()
        for (_, fd) in pendingConnects { close(fd) }
        pendingConnects = [:]
        for (fd, _) in listeners {
            loop.remove(fd)
            close(fd)
        }
        listeners = [:]
        for waiter in waiters { waiter.resume(returning: reason) }
    }
}

/// Why a link could not be set up.
public enum MojoLinkError: Error, CustomStringConvertible {
    case setup(String)

    public var description: String {
        switch self {
        case .setup(let what): return "mojo-proxy: \(what)"
        }
    }
}
