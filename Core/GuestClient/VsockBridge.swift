import EventLoop
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A local Unix socket that reaches one guest vsock port through a VM's vsock socket.
///
/// vmm serves a VM's vsock as a Unix socket where each connection starts with Firecracker's
/// `CONNECT <port>\n` / `OK <n>\n` exchange; gRPC clients cannot speak that first line. The bridge
/// listens on a private socket of its own and, for each connection, dials the VM's socket, does
/// the exchange, then copies bytes both ways. Half-closes pass through.
public final class VsockBridge: Sendable {
    /// The socket to hand to a gRPC client (`.unixDomainSocket(path:)`).
    public let path: String
    public let vsockSocket: String
    public let port: UInt32
    private let directory: String
    private let listener: Int32
    private let lastFailure = Mutex<String?>(nil)

    /// How long the VM may take to answer `CONNECT` before the connection is dropped: longer
    /// than vmm's own waits (5 s for an accept, 10 s for a receive buffer), so that vmm's reason
    /// arrives first; only a VMM that answers nothing at all runs into this.
    static let handshakeTimeoutSeconds = 15

    public init(vsockSocket: String, port: UInt32) throws(GuestClientError) {
        self.vsockSocket = vsockSocket
        self.port = port
        var template = Array("/tmp/vmtools-bridge.XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else {
            throw .system("creating a directory for the vsock bridge", errno: errno)
        }
        directory = String(cString: made)
        path = "\(directory)/port-\(port).sock"
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .system("socket", errno: errno) }
        listener = fd
        guard let address = UnixAddress(path) else { throw .invalid("socket path \(path) is too long") }
        let bound = address.withSockaddr { bind(fd, $0, $1) }
        guard bound == 0, listen(fd, 16) == 0 else {
            let code = errno
            Glibc.close(fd)
            rmdir(directory)
            throw .system("listening on \(path)", errno: code)
        }
        do {
            try HostThread.detached(name: "vsock-bridge") { [self] in acceptLoop() }
        } catch {
            Glibc.close(fd)
            throw .system("starting the vsock bridge thread", errno: EAGAIN)
        }
    }

    /// Why the last connection through the bridge failed, if one did (e.g. the guest refused it).
    public var failure: String? { lastFailure.withLock { $0 } }

    /// Stops accepting and removes the socket; connections already bridged run to their end.
    public func close() {
        shutdown(listener, Int32(SHUT_RDWR))
        unlink(path)
        rmdir(directory)
    }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                Glibc.close(listener)
                return
            }
            do {
                try HostThread.detached(name: "vsock-conn") { [self] in bridge(client) }
            } catch {
                Glibc.close(client)
            }
        }
    }

    private func bridge(_ client: Int32) {
        let vm: Int32
        switch dial() {
        case .success(let fd): vm = fd
        case .failure(let failure):
            lastFailure.withLock { $0 = failure.description }
            Glibc.close(client)
            return
        }
        let done = Atomic<Int>(0)
        let finish: @Sendable () -> Void = {
            if done.add(1, ordering: .acquiringAndReleasing).newValue == 2 {
                Glibc.close(client)
                Glibc.close(vm)
            }
        }
        do {
            try HostThread.detached(name: "vsock-up") {
                Self.copy(from: client, to: vm)
                finish()
            }
        } catch {
            Glibc.close(client)
            Glibc.close(vm)
            return
        }
        Self.copy(from: vm, to: client)
        finish()
    }

    /// Connects to the VM's socket and opens the guest port.
    private func dial() -> Result<Int32, GuestClientError> {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return .failure(.system("socket", errno: errno)) }
        guard let address = UnixAddress(vsockSocket) else {
            Glibc.close(fd)
            return .failure(.invalid("vsock socket path \(vsockSocket) is too long"))
        }
        if address.withSockaddr({ connect(fd, $0, $1) }) != 0 {
            let code = errno
            Glibc.close(fd)
            return .failure(.system("connecting to the VM's vsock socket \(vsockSocket)", errno: code))
        }
        // The bridge streams the client's bytes into the VM: a large send buffer keeps the
        // device from reading the socket dry between two wake-ups of this writer.
        UnixSocket.setSendBuffer(fd)
        var timeout = timeval(tv_sec: Self.handshakeTimeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let request = Array("CONNECT \(port)\n".utf8)
        var reply: [UInt8] = []
        var byte: UInt8 = 0
        let sent = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var waitedOut = false
        if sent == request.count {
            // One byte at a time: nothing after the newline may be consumed here.
            while reply.count < 64 {
                let n = recv(fd, &byte, 1, 0)
                if n < 0 && errno == EINTR { continue }
                if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { waitedOut = true }
                guard n == 1, byte != UInt8(ascii: "\n") else { break }
                reply.append(byte)
            }
        }
        let line = String(decoding: reply, as: UTF8.self)
        guard line.hasPrefix("OK ") else {
            Glibc.close(fd)
            // vmm's word that the guest did not answer in time (it says why and after how long).
            if line.hasPrefix("ERROR "), line.contains("within") {
                return .failure(.timedOut("vsock port \(port): \(line.dropFirst(6))"))
            }
            // No answer at all is not a refusal: the VM's vsock device or the guest is stuck.
            if waitedOut && reply.isEmpty {
                return .failure(
                    .timedOut(
                        "vsock port \(port): the VM gave no answer to CONNECT within \(Self.handshakeTimeoutSeconds) s")
                )
            }
            return .failure(.refused(port: port, reply: line))
        }
        timeout = timeval(tv_sec: 0, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        return .success(fd)
    }

    private static func copy(from source: Int32, to destination: Int32) {
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        copying: while true {
            let n = buffer.withUnsafeMutableBytes { read(source, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            var offset = 0
            while offset < n {
                let written = buffer.withUnsafeBytes {
                    send(destination, $0.baseAddress! + offset, n - offset, Int32(MSG_NOSIGNAL))
                }
                if written < 0 && errno == EINTR { continue }
                guard written > 0 else { break copying }
                offset += written
            }
        }
        shutdown(destination, Int32(SHUT_WR))
    }
}
