import CLinux
import EventLoop

#if canImport(Glibc)
    import Glibc
#endif

// MARK: - Proxied descriptors: reading, writing, passing descriptors

extension MojoLink {
    func localReady(_ local: MojoLocal, _ readiness: EventLoop.Readiness) -> EventLoop.Next {
        guard locals[local.handle] === local else { return .remove }
        if readiness.contains(.writable) || (readiness.contains(.error) && !local.pending.isEmpty) {
            writePending(local)
            guard locals[local.handle] === local else { return .remove }
        }
        if local.readsFromFD, !local.readEnded,
            readiness.contains(.readable) || readiness.contains(.hangUp)
                || readiness.contains(.peerClosedWriting) || readiness.contains(.error)
        {
            readLocal(local)
        } else if readiness.contains(.hangUp), local.pending.isEmpty {
            drop(local)  // a write end whose reader went away
        }
        return locals[local.handle] === local ? .keep : .remove
    }

    // MARK: - Local → other proxy

    /// Reads what the window allows and sends it, with any descriptors, as one Data.
    func readLocal(_ local: MojoLocal) {
        guard outgoingLength < Self.outgoingHigh, local.window > 0 else {
            local.readPaused = true
            updateInterest(local)
            return
        }
        var buffer = [UInt8](repeating: 0, count: min(MojoFrame.maxPayload, local.window))
        var fds = [Int32](repeating: -1, count: MojoFrame.maxTransferred)
        var count: Int32 = 0
        var truncated: Int32 = 0
        let n: Int
        if case .socket = local.role {
            n = buffer.withUnsafeMutableBytes { bytes in
                fds.withUnsafeMutableBufferPointer {
                    clinux_recv_with_fds(
                        local.fd, bytes.baseAddress, UInt(bytes.count), $0.baseAddress, Int32($0.count), &count,
                        &truncated)
                }
            }
        } else {
            let r = buffer.withUnsafeMutableBytes { Glibc.read(local.fd, $0.baseAddress, $0.count) }
            n = r >= 0 ? r : -Int(errno)
        }
        if n == -Int(EAGAIN) || n == -Int(EINTR) { return }
        let received = Array(fds.prefix(Int(count)))
        guard n > 0 || !received.isEmpty else {
            for fd in received { close(fd) }
            if n == 0, local.halfCloses, !local.writeEnded, !local.closing {
                // Half-closed: the other side's end stops writing, and may still answer.
                local.readEnded = true
                var end = Vmtools_Mojo_Message()
                end.data.handle = local.handle
                end.data.endOfStream = true
                send(end)
                updateInterest(local)
                return
            }
            // End of stream both ways, or an error: the other side's end closes too.
            drop(local, error: n < 0 ? Int32(-n) : 0)
            return
        }
        if truncated != 0 {
            log("handle \(local.handle): more descriptors than \(MojoFrame.maxTransferred) in one message; closing it")
            for fd in received { close(fd) }
            drop(local, error: EMSGSIZE)
            return
        }
        var data = Vmtools_Mojo_Message()
        data.data.handle = local.handle
        data.data.payload = .init(buffer[0..<max(0, n)])
        for fd in received {
            guard let described = passOn(fd) else {
                // Never a silent drop: the connection that carried it fails, and the log says why.
                for other in received { close(other) }
                drop(local, error: EOPNOTSUPP)
                return
            }
            data.data.transferred.append(described)
        }
        local.window -= max(0, n)
        send(data)
    }

    /// A descriptor a local process sent: kept here under a new handle, described for the
    /// other side. nil for kinds that cannot cross (logged).
    func passOn(_ fd: Int32) -> Vmtools_Mojo_FileDescriptor? {
        guard let kind = Self.kind(of: fd) else {
            log("a descriptor of a kind that cannot be passed (not a socket, pipe or regular file) was sent; refused")
            return nil
        }
        let role: MojoLocal.Role
        switch kind {
        case .streamSocket, .seqpacketSocket, .datagramSocket: role = .socket(kind)
        case .fifoRead: role = .reads
        case .fifoWrite: role = .writes
        case .regularFile:
            return serve(file: fd)
        }
        let handle = allocateID()
        register(MojoLocal(handle: handle, fd: fd, role: role, window: Self.window))
        var described = Vmtools_Mojo_FileDescriptor()
        described.type = kind.wireType
        described.handle = handle
        return described
    }

    /// What `fd` is, as the protocol names it.
    static func kind(of fd: Int32) -> FileKind? {
        var info = stat()
        guard fstat(fd, &info) == 0 else { return nil }
        switch info.st_mode & S_IFMT {
        case S_IFSOCK:
            var type: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            guard getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) == 0 else { return nil }
            switch type {
            case Int32(SOCK_STREAM.rawValue): return .streamSocket
            case Int32(SOCK_SEQPACKET.rawValue): return .seqpacketSocket
            case Int32(SOCK_DGRAM.rawValue): return .datagramSocket
            default: return nil
            }
        case S_IFIFO:
            return fcntl(fd, F_GETFL) & O_ACCMODE == O_WRONLY ? .fifoWrite : .fifoRead
        case S_IFREG:
            return .regularFile
        default:
            return nil
        }
    }

    // MARK: - Other proxy → local

    /// Data for one of our handles: recreate its descriptors, queue its bytes, write.
    func receive(_ data: Vmtools_Mojo_Data) throws(MojoFrameError) {
        var fds: [Int32] = []
        for described in data.transferred {
            guard isPeerHandle(described.handle), locals[described.handle] == nil else {
                for fd in fds { close(fd) }
                throw .invalid("a passed descriptor with handle \(described.handle)")
            }
            guard let fd = recreate(described) else {
                for fd in fds { close(fd) }
                // The other side gets the handle closed; the data goes on without it.
                var close = Vmtools_Mojo_Message()
                close.close.handle = described.handle
                close.close.errorCode = EOPNOTSUPP
                send(close)
                continue
            }
            fds.append(fd)
        }
        guard let local = locals[data.handle], local.writesToFD, !local.closing else {
            // Closed here meanwhile: what was sent for it goes nowhere.
            for fd in fds { close(fd) }
            return
        }
        guard local.pendingBytes + data.payload.count <= 2 * Self.window else {
            for fd in fds { close(fd) }
            throw .invalid("Data beyond handle \(data.handle)'s window")
        }
        guard !local.writeEndRequested else {
            for fd in fds { close(fd) }
            throw .invalid("Data for handle \(data.handle) after its end of stream")
        }
        if !data.payload.isEmpty || !fds.isEmpty {
            local.pending.append(MojoLocal.Pending(bytes: Array(data.payload), fds: fds))
            local.pendingBytes += data.payload.count
        }
        if data.endOfStream {
            guard local.halfCloses else {
                throw .invalid("end of stream for handle \(data.handle), not a stream socket")
            }
            local.writeEndRequested = true
        }
        writePending(local)
    }

    /// A local stand-in for a descriptor the other side passed: our end is registered under
    /// `handle`; the returned end goes to the local recipient.
    func recreate(_ described: Vmtools_Mojo_FileDescriptor) -> Int32? {
        guard let kind = FileKind(described.type) else { return nil }
        let handle = described.handle
        var pair: [Int32] = [-1, -1]
        let role: MojoLocal.Role
        let ours: Int32
        let theirs: Int32
        switch kind {
        case .streamSocket, .seqpacketSocket, .datagramSocket:
            let type: Int32 =
                kind == .streamSocket
                ? Int32(SOCK_STREAM.rawValue)
                : kind == .seqpacketSocket ? Int32(SOCK_SEQPACKET.rawValue) : Int32(SOCK_DGRAM.rawValue)
            guard socketpair(AF_UNIX, type | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else { return nil }
            (ours, theirs, role) = (pair[0], pair[1], .socket(kind))
        case .fifoRead:
            // The recipient reads: it gets the read end, we write what arrives.
            guard pipe2(&pair, O_CLOEXEC) == 0 else { return nil }
            (ours, theirs, role) = (pair[1], pair[0], .writes)
        case .fifoWrite:
            guard pipe2(&pair, O_CLOEXEC) == 0 else { return nil }
            (ours, theirs, role) = (pair[0], pair[1], .reads)
        case .regularFile:
            return standIn(for: described)
        }
        register(MojoLocal(handle: handle, fd: ours, role: role, window: Self.window))
        return theirs
    }

    /// Writes what is queued for `local` (descriptors with their first byte); credits what was
    /// written; closes it when the other side closed and all is written.
    func writePending(_ local: MojoLocal) {
        while var entry = local.pending.first {
            let remaining = entry.bytes.count - entry.offset
            let n: Int
            if case .socket = local.role {
                n = entry.bytes.withUnsafeBytes { bytes in
                    entry.fds.withUnsafeBufferPointer {
                        clinux_send_with_fds(
                            local.fd, bytes.baseAddress.map { $0 + entry.offset }, UInt(remaining), $0.baseAddress,
                            Int32($0.count))
                    }
                }
            } else {
                let w = entry.bytes.withUnsafeBytes {
                    Glibc.write(local.fd, $0.baseAddress.map { $0 + entry.offset }, remaining)
                }
                n = w >= 0 ? w : -Int(errno)
            }
            if n == -Int(EAGAIN) || n == -Int(EINTR) { break }
            guard n >= 0 else {
                drop(local, error: Int32(-n))
                return
            }
            // Descriptors went with the first byte (or with an empty message): ours can go.
            for fd in entry.fds { close(fd) }
            entry.fds = []
            entry.offset += n
            local.uncredited += n
            local.pendingBytes -= n
            if entry.offset >= entry.bytes.count {
                local.pending.removeFirst()
            } else {
                local.pending[0] = entry
                if n == 0 { break }
            }
        }
        if local.uncredited > 0, local.uncredited >= Self.window / 4 || local.pending.isEmpty {
            var credit = Vmtools_Mojo_Message()
            credit.credit.handle = local.handle
            credit.credit.bytes = UInt64(local.uncredited)
            local.uncredited = 0
            send(credit)
        }
        if local.closing, local.pending.isEmpty {
            drop(local, tellPeer: false)
            return
        }
        if local.writeEndRequested, !local.writeEnded, local.pending.isEmpty {
            shutdown(local.fd, Int32(SHUT_WR))
            local.writeEnded = true
            if local.readEnded {
                drop(local)  // both directions are over: the other side frees its end too
                return
            }
        }
        updateInterest(local)
    }
}
