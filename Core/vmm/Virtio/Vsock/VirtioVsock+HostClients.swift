import EventLoop
import GuestMemory
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Host clients: the Unix socket at `socketPath` and the per-port listeners, the CONNECT
/// handshake, and the writes that wait for a slow host reader.
extension VirtioVsock {
    // MARK: - Host clients (the Unix socket at socketPath)

    func acceptHostClients() {
        while let fd = UnixSocket.accept(listener) {
            let accepted = state.withLock { state -> Bool in
                guard state.connections.count < Self.maxConnections, register(fd) else { return false }
                state.connections[fd] = VsockConnection(fd: fd, key: nil, state: .awaitingConnectLine([]))
                return true
            }
            if !accepted {
                log("vsock: refused a host client: too many connections")
                close(fd)
            }
        }
    }

    /// Accepts clients of a per-port listener: each asks the guest for `guestPort` at once.
    /// Returns whether a request is waiting for a receive buffer.
    func acceptPortClients(_ listener: Int32, guestPort: UInt32) -> Bool {
        var requested = false
        while let fd = UnixSocket.accept(listener) {
            let accepted = state.withLock { state -> Bool in
                guard state.connections.count < Self.maxConnections, register(fd) else { return false }
                var connection = VsockConnection(fd: fd, key: nil, state: .connecting)
                connection.announcesAcceptance = false
                requestGuestPort(guestPort, fd, &connection, &state)
                return true
            }
            if accepted {
                requested = true
            } else {
                log("vsock: refused a client of guest port \(guestPort): too many connections")
                close(fd)
            }
        }
        return requested
    }

    /// Resets host-initiated streams the guest has not answered within the connect timeout; a
    /// CONNECT client is told why before it is closed, so that it can tell this from a refusal.
    func expireUnansweredConnects() {
        let now = IntervalTimer.nowMilliseconds()
        let wake = state.withLock { state -> Bool in
            let expired = state.connections.values.filter {
                guard $0.state == .connecting else { return false }
                if let delivered = $0.deliveredAtMilliseconds {
                    return now &- delivered >= connectTimeoutMilliseconds
                }
                return now &- $0.requestedAtMilliseconds >= Self.queuedConnectTimeoutMilliseconds
            }
            for connection in expired {
                let why =
                    connection.deliveredAtMilliseconds == nil
                    ? "the guest took no receive buffer within \(Self.queuedConnectTimeoutMilliseconds) ms"
                    : "the guest did not accept within \(connectTimeoutMilliseconds) ms"
                log("vsock: guest port \(connection.key?.guestPort ?? 0): \(why); closing the host client")
                if connection.announcesAcceptance {
                    let reply = Array("ERROR \(why)\n".utf8)
                    _ = reply.withUnsafeBytes { send(connection.fd, $0.baseAddress, $0.count, noSignal) }
                }
                closeAndReset(connection.fd, &state)
            }
            return !expired.isEmpty
        }
        if wake { receiveKick.raise() }
    }

    /// Readiness of a connection's host socket, on the loop's thread.
    func hostSocketReady(_ fd: Int32, _ readiness: EventLoop.Readiness) {
        let wake = state.withLock { state -> Bool in
            guard var connection = state.connections[fd] else { return false }
            switch connection.state {
            case .awaitingConnectLine(let line):
                readConnectLine(fd, so: line, &connection, &state)
            case .connecting:
                // The client left before the guest answered.
                if !readiness.isDisjoint(with: [.hangUp, .peerClosedWriting, .error]) { closeAndReset(fd, &state) }
            case .established:
                if readiness.contains(.writable) { flushPending(fd, &state) }
                guard state.connections[fd] != nil else { break }
                if !readiness.isDisjoint(with: [.readable, .peerClosedWriting, .hangUp, .error]) {
                    state.connections[fd]?.hostReadable = true
                }
                if !readiness.isDisjoint(with: [.peerClosedWriting, .hangUp, .error]) {
                    state.connections[fd]?.hostEndReported = true
                }
                if !readiness.isDisjoint(with: [.hangUp, .error]) {
                    // Reported for as long as it is watched: stop watching. What is left to
                    // read is read by the receive queue, up to EOF; a write now fails and resets.
                    loop.withLock { $0 }?.remove(fd)
                    // Bytes already waiting for the host would otherwise wait for good (nothing
                    // watches for writability now): try them, so that the failure resets.
                    if state.connections[fd]?.pendingToHost.isEmpty == false { flushPending(fd, &state) }
                }
            }
            return state.receiveHasWork
        }
        if wake { receiveKick.raise() }
    }

    /// Reads `CONNECT <port>\n` (at most 32 bytes); on a good line, asks the guest to accept.
    func readConnectLine(
        _ fd: Int32, so far: [UInt8], _ connection: inout VsockConnection, _ state: inout State
    ) {
        var line = far
        var byte: UInt8 = 0
        while line.count < 32 {
            let n = read(fd, &byte, 1)
            if n == 1 {
                if byte == UInt8(ascii: "\n") { break }
                line.append(byte)
                continue
            }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                state.connections[fd]?.state = .awaitingConnectLine(line)
                return
            }
            return closeAndForgetQuietly(fd, &state)  // EOF or error before a full line
        }
        let text = String(decoding: line, as: UTF8.self)
        guard byte == UInt8(ascii: "\n"), text.hasPrefix("CONNECT "), let port = UInt32(text.dropFirst(8)) else {
            let reply = Array("ERROR expected CONNECT <port>\n".utf8)
            _ = reply.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, noSignal) }
            return closeAndForgetQuietly(fd, &state)
        }
        requestGuestPort(port, fd, &connection, &state)
    }

    /// Gives a host client a host port and sends the guest a REQUEST for guest `port`.
    func requestGuestPort(
        _ port: UInt32, _ fd: Int32, _ connection: inout VsockConnection, _ state: inout State
    ) {
        var hostPort = state.nextHostPort
        while state.byKey[VsockConnectionKey(hostPort: hostPort, guestPort: port)] != nil { hostPort &+= 1 }
        state.nextHostPort = hostPort &+ 1 < Self.firstHostPort ? Self.firstHostPort : hostPort &+ 1
        let key = VsockConnectionKey(hostPort: hostPort, guestPort: port)
        connection.key = key
        connection.state = .connecting
        connection.requestedAtMilliseconds = IntervalTimer.nowMilliseconds()
        state.control.append(packet(.request, for: &connection))
        state.connections[fd] = connection
        state.byKey[key] = fd
        updateInterest(fd, &state)
    }

    /// Writes what waits for the host socket; announces credit as it frees up.
    func flushPending(_ fd: Int32, _ state: inout State) {
        guard var connection = state.connections[fd] else { return }
        if !connection.pendingToHost.isEmpty {
            guard let sent = connection.pendingToHost.withUnsafeBytes({ sendAvailable(fd, $0) }) else {
                return closeAndReset(fd, &state)
            }
            connection.pendingToHost.removeFirst(sent)
            connection.forwarded &+= UInt32(sent)
        }
        announceCreditIfDue(&connection, &state)
        state.connections[fd] = connection
        finishHalfClosed(fd, &state)
    }
}
