import CLinux
import EventLoop

#if canImport(Glibc)
    import Glibc
#endif

// MARK: - Messages from the other proxy

extension MojoLink {
    func handle(_ message: Vmtools_Mojo_Message) throws(MojoFrameError) {
        guard let command = message.command else { return }
        if case .hello(let hello) = command {
            guard hello.version == MojoFrame.version else {
                throw .invalid("the other proxy speaks version \(hello.version), not \(MojoFrame.version)")
            }
            helloReceived = true
            return
        }
        guard helloReceived else { throw .invalid("a message before Hello") }
        switch command {
        case .hello: break
        case .connectRequest(let request): try connect(request)
        case .connectResponse(let response): try connected(response)
        case .data(let data): try receive(data)
        case .close(let close):
            if closeServedFile(close.handle) { return }
            // A handle already gone (both ends closed at once) needs nothing more.
            guard let local = locals[close.handle] else { return }
            if close.errorCode != 0 {
                log("handle \(close.handle) failed on the other side: \(String(cString: strerror(close.errorCode)))")
            }
            if local.pending.isEmpty {
                drop(local, tellPeer: false)
            } else {
                local.closing = true
                updateInterest(local)
            }
        case .credit(let credit):
            guard let local = locals[credit.handle] else { return }
            local.window += Int(credit.bytes)
            guard local.window <= 2 * Self.window else { throw .invalid("credit beyond the window") }
            if local.readPaused, outgoingLength < Self.outgoingHigh {
                local.readPaused = false
                updateInterest(local)
            }
        case .preadRequest(let request): answer(request)
        case .pwriteRequest(let request): answer(request)
        case .fstatRequest(let request): answer(request)
        case .ftruncateRequest(let request): answer(request)
        case .preadResponse(let response):
            try answered(cookie: response.cookie, error: response.errorCode) {
                guard case .read(let reply) = $0 else { return false }
                reply(.success(Array(response.blob)))
                return true
            }
        case .pwriteResponse(let response):
            try answered(cookie: response.cookie, error: response.errorCode) {
                guard case .write(let reply) = $0 else { return false }
                reply(.success(Int(clamping: response.bytesWritten)))
                return true
            }
        case .fstatResponse(let response):
            try answered(cookie: response.cookie, error: response.errorCode) {
                guard case .size(let reply) = $0 else { return false }
                reply(.success(response.size))
                return true
            }
        case .ftruncateResponse(let response):
            try answered(cookie: response.cookie, error: response.errorCode) {
                guard case .truncate(let reply) = $0 else { return false }
                reply(.success(()))
                return true
            }
        }
    }

    // MARK: - Connecting

    /// Guest: a client connected to a channel's socket; the host connects it onward.
    func acceptClient(_ listener: Int32, channel: UInt32) {
        let client = accept4(listener, nil, nil, Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue))
        guard client >= 0 else { return }
        let cookie = allocateID()
        pendingConnects[cookie] = client
        var request = Vmtools_Mojo_Message()
        request.connectRequest.cookie = cookie
        request.connectRequest.channel = channel
        send(request)
    }

    /// Host: connect to the channel's socket and answer with the new handle or the errno.
    func connect(_ request: Vmtools_Mojo_ConnectRequest) throws(MojoFrameError) {
        guard side == .host else { throw .invalid("ConnectRequest sent to the guest") }
        var response = Vmtools_Mojo_Message()
        response.connectResponse.cookie = request.cookie
        if let path = channels[request.channel] {
            do {
                let fd = try UnixSocket.connect(to: path)
                let handle = allocateID()
                register(MojoLocal(handle: handle, fd: fd, role: .socket(.streamSocket), window: Self.window))
                response.connectResponse.handle = handle
            } catch {
                log("channel \(request.channel): cannot connect to \(path): \(error)")
                response.connectResponse.errorCode = Self.errorNumber(of: error)
            }
        } else {
            log("the guest asked for channel \(request.channel), which is not configured")
            response.connectResponse.errorCode = ENOENT
        }
        send(response)
    }

    /// Guest: the host connected the client (or could not: the client is closed, and sees the
    /// connection end before any byte).
    func connected(_ response: Vmtools_Mojo_ConnectResponse) throws(MojoFrameError) {
        guard side == .guest else { throw .invalid("ConnectResponse sent to the host") }
        guard let client = pendingConnects.removeValue(forKey: response.cookie) else {
            throw .invalid("ConnectResponse for an unknown cookie \(response.cookie)")
        }
        guard response.errorCode == 0 else {
            log("the host could not connect a client: \(String(cString: strerror(response.errorCode)))")
            close(client)
            return
        }
        guard isPeerHandle(response.handle), locals[response.handle] == nil else {
            close(client)
            throw .invalid("ConnectResponse with handle \(response.handle)")
        }
        register(MojoLocal(handle: response.handle, fd: client, role: .socket(.streamSocket), window: Self.window))
    }

    static func errorNumber(of error: EventLoopError) -> Int32 {
        switch error {
        case .system(_, let code): return code
        }
    }
}
