import EventLoop
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// One connection: the reader (the thread that called ``P9Server/serve(fd:)``) reads frames,
/// answers Tversion and Tflush itself and hands every other request to a pool of worker
/// threads; replies are written whole, one at a time. A quick metadata request (walk, getattr,
/// clunk, ...) that arrives while nothing else is in flight, as a `find` or `stat` sends them
/// one by one, is handled by the reader itself: two thread hand-offs fewer per request.
///
/// Tflush: a request still queued is dropped and only Rflush is sent; one already running
/// finishes, its reply is written, then Rflush (both under the write lock, so the order holds).
final class P9Session: @unchecked Sendable {
    /// A request between its arrival and its reply.
    struct InFlight {
        var started = false
        var cancelled = false
        /// Tflush tags waiting for this request's reply.
        var flushTags: [UInt16] = []
    }

    let server: P9Server
    let fd: Int32
    let queue: P9RequestQueue
    /// Negotiated msize (the server's maximum until Tversion).
    let msize: Atomic<UInt32>
    let negotiated = Atomic<Bool>(false)
    let fids = Mutex<[UInt32: P9Fid]>([:])
    let inFlight = Mutex<[UInt16: InFlight]>([:])
    /// Held while a reply (and the Rflushes that follow it) is written.
    let writeLock = Mutex<Void>(())
    let writeFailed = Atomic<Int32>(0)
    let xattrBudget: P9XattrBudget

    init(server: P9Server, fd: Int32) {
        self.server = server
        self.fd = fd
        queue = P9RequestQueue(limit: server.configuration.maxInFlight)
        msize = Atomic(server.configuration.maxMessageSize)
        xattrBudget = P9XattrBudget(limit: server.configuration.maxXattrBytes)
    }

    var configuration: P9Server.Configuration { server.configuration }

    // MARK: - The reader

    func run() -> P9SessionEnd {
        var workers: [HostThread] = []
        for _ in 0..<queue.limit {
            if let worker = try? HostThread(name: "p9-worker", { [self] in workerLoop() }) {
                workers.append(worker)
            }
        }
        let end: P9SessionEnd
        if workers.isEmpty {
            end = .transportError(errno: EAGAIN)
        } else {
            end = readLoop()
        }
        queue.close()
        for worker in workers { worker.join() }
        fids.withLock { $0.removeAll() }
        return end
    }

    private func readLoop() -> P9SessionEnd {
        let reader = P9FrameReader(fd: fd)
        while true {
            guard queue.acquireSlot() else { return .closed }
            let frame: [UInt8]
            do {
                guard let next = try reader.next(limit: msize.load(ordering: .relaxed)) else { return .closed }
                frame = next
            } catch {
                switch error {
                case .transport(let errno): return .transportError(errno: errno)
                case .truncated: return .closed
                case .badSize(let size, let limit): return .protocolError("frame size \(size), msize \(limit)")
                }
            }
            let failed = writeFailed.load(ordering: .relaxed)
            if failed != 0 { return .transportError(errno: failed) }
            // The reader only gets here with a whole frame of 7...msize bytes.
            let tag = UInt16(frame[5]) | UInt16(frame[6]) << 8
            let request: P9Request
            do {
                request = try P9Request.decode(frame: frame).request
            } catch {
                let code: Int32
                switch error {
                case .unknownType, .wrongDirection: code = EOPNOTSUPP
                default: code = EINVAL
                }
                queue.releaseSlot()
                send(.error(errno: UInt32(code)), tag: tag)
                continue
            }
            switch request {
            case .version(let size, let version):
                queue.releaseSlot()
                handleVersion(tag: tag, msize: size, version: version)
            case .flush(let oldTag):
                queue.releaseSlot()
                guard handleFlush(tag: tag, oldTag: oldTag) else {
                    return .protocolError("more than \(Self.maxFlushesPerTag) Tflush for tag \(oldTag)")
                }
            default:
                guard negotiated.load(ordering: .relaxed) else {
                    queue.releaseSlot()
                    send(.error(errno: UInt32(EPROTO)), tag: tag)
                    continue
                }
                let duplicate = inFlight.withLock { table in
                    if table[tag] != nil { return true }
                    table[tag] = InFlight()
                    return false
                }
                if duplicate { return .protocolError("tag \(tag) reused while in flight") }
                let job = P9Job(tag: tag, request: request)
                if Self.isQuick(request), configuration.beforeHandling == nil, queue.isAlone {
                    perform(job)
                } else {
                    queue.push(job)
                }
            }
        }
    }

    private func handleVersion(tag: UInt16, msize requested: UInt32, version: String) {
        // Tversion aborts the session's state: wait for running requests, then drop every fid.
        queue.waitIdle()
        fids.withLock { $0.removeAll() }
        guard version.hasPrefix(P9.version) else {
            send(.version(msize: min(requested, configuration.maxMessageSize), version: "unknown"), tag: tag)
            return
        }
        guard requested >= P9.minimumMessageSize else {
            send(.error(errno: UInt32(EINVAL)), tag: tag)
            return
        }
        let agreed = min(requested, configuration.maxMessageSize)
        msize.store(agreed, ordering: .relaxed)
        negotiated.store(true, ordering: .relaxed)
        send(.version(msize: agreed, version: P9.version), tag: tag)
    }

    /// Tflushes one request may collect (the Linux client sends one); more is abuse.
    static let maxFlushesPerTag = 64

    /// Answers Tflush now if `oldTag` is not in flight, or after its reply otherwise; false if
    /// the request has collected too many flushes.
    private func handleFlush(tag: UInt16, oldTag: UInt16) -> Bool {
        let outcome = inFlight.withLock { table -> Bool? in
            guard var entry = table[oldTag] else { return true }
            guard entry.flushTags.count < Self.maxFlushesPerTag else { return nil }
            entry.flushTags.append(tag)
            if !entry.started { entry.cancelled = true }
            table[oldTag] = entry
            return false
        }
        guard let answerNow = outcome else { return false }
        if answerNow { send(.flush, tag: tag) }
        return true
    }

    // MARK: - Workers

    /// Requests that never wait on anything but the file system itself (not on a FIFO's other
    /// end, as an open or a read may, nor on a lock).
    static func isQuick(_ request: P9Request) -> Bool {
        switch request {
        case .walk, .getattr, .clunk, .statfs, .readlink, .readdir: return true
        default: return false
        }
    }

    private func workerLoop() {
        while let job = queue.pop() { perform(job) }
    }

    /// Handles `job` and writes its reply (and the Rflushes waiting for it); frees its slot.
    private func perform(_ job: P9Job) {
        let run = inFlight.withLock { table -> Bool in
            guard var entry = table[job.tag], !entry.cancelled else { return false }
            entry.started = true
            table[job.tag] = entry
            return true
        }
        var reply: [UInt8]? = nil
        if run {
            configuration.beforeHandling?(job.request)
            let response: P9Response
            do {
                response = try handle(job.request)
            } catch {
                response = .error(errno: UInt32(error.code))
            }
            reply = response.encode(tag: job.tag)
        }
        writeLock.withLock { _ in
            // The tag is free before its reply is out (a client may reuse it the moment it
            // reads the reply); a Tflush that now finds it gone answers at once, but must
            // wait for this lock, so its Rflush still follows the reply.
            let flushes = inFlight.withLock { $0.removeValue(forKey: job.tag)?.flushTags ?? [] }
            if let reply { write(reply) }
            for flushTag in flushes { write(P9Response.flush.encode(tag: flushTag)) }
        }
        queue.releaseSlot()
    }

    // MARK: - Replies

    func send(_ response: P9Response, tag: UInt16) {
        let bytes = response.encode(tag: tag)
        writeLock.withLock { _ in write(bytes) }
    }

    /// Writes one frame; called with `writeLock` held. A failed write is remembered and ends
    /// the session at the reader's next turn.
    private func write(_ bytes: [UInt8]) {
        guard writeFailed.load(ordering: .relaxed) == 0 else { return }
        let result = p9WriteAll(fd, bytes)
        if result != 0 { writeFailed.store(result, ordering: .relaxed) }
    }
}
