import CLinux
import EventLoop
import Processes

#if canImport(Glibc)
    import Glibc
#endif

// MARK: - A server's folder, socket and process

extension ServerManager {
    /// The server's folder: its own small tmpfs, a shared mount so that share mounts made under
    /// it here propagate into the server's namespace (where it is a slave), with `shares/`
    /// (the export) and `proc/` (where the server puts /proc).
    func makeFolder(_ folder: String) throws(SeneschalError) {
        removeFolder(folder)
        guard mkdir(folder, 0o755) == 0 else { throw .system("creating \(folder)", errno) }
        var result = clinux_mount_tmpfs(folder, "mode=0755,size=64k,nr_inodes=4096")
        guard result == 0 else {
            rmdir(folder)
            throw .system("mounting a tmpfs at \(folder)", -result)
        }
        result = clinux_mount_propagation(folder, 2, 0)
        guard result == 0, mkdir(folder + "/shares", 0o755) == 0, mkdir(folder + "/proc", 0o555) == 0 else {
            let code = result < 0 ? -result : errno
            removeFolder(folder)
            throw .system("preparing \(folder)", code)
        }
    }

    func removeFolder(_ folder: String) {
        _ = clinux_unmount_detached(folder)
        rmdir(folder)
    }

    /// What the server listens on (a descriptor the caller closes), and how to show it.
    func openEndpoint(_ options: ServerOptions) throws(SeneschalError) -> (fd: Int32, description: String) {
        switch options.endpoint {
        case .socket(let path):
            let fd: Int32
            do { fd = try UnixSocket.listen(at: path, mode: 0o600) } catch {
                throw .failed("cannot listen at \(path): \(error)")
            }
            // The server's user may connect too (a user mounting its own server with trans=unix).
            chown(path, options.uid, options.gid)
            return (fd, "socket:\(path)")
        case .descriptor(let passed):
            let fd = fcntl(passed.fd, F_DUPFD_CLOEXEC, 3)
            guard fd >= 0 else { throw .system("duplicating the passed socket", errno) }
            return (fd, "fd")
        case .vsock(let port, let cid):
            return (try Self.listenVsock(port: port), "vsock:\(port)@\(cid)")
        }
    }

    /// An AF_VSOCK listener on `port` of any local CID.
    static func listenVsock(port: UInt32) throws(SeneschalError) -> Int32 {
        let fd = socket(40, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)  // AF_VSOCK
        guard fd >= 0 else { throw .system("creating a vsock socket (is vhost_vsock loaded?)", errno) }
        // struct sockaddr_vm: family, reserved, port, cid (VMADDR_CID_ANY), flags, zero[3].
        var address = [UInt8](repeating: 0, count: 16)
        address[0] = 40
        withUnsafeBytes(of: port.littleEndian) { address.replaceSubrange(4..<8, with: $0) }
        withUnsafeBytes(of: UInt32.max.littleEndian) { address.replaceSubrange(8..<12, with: $0) }
        let bound = address.withUnsafeBytes {
            bind(fd, $0.baseAddress?.assumingMemoryBound(to: sockaddr.self), socklen_t(16))
        }
        guard bound == 0, listen(fd, 16) == 0 else {
            let code = errno
            close(fd)
            throw .system("listening on vsock port \(port)", code)
        }
        return fd
    }

    /// Starts `seneschal-server` with the listener as its fd 3 and a pipe as fd 4, on which it
    /// says "ready" once it is confined and serving; a server that fails to set itself up
    /// closes the pipe instead, and its error is in the journal.
    func spawn(folder: String, listener: Int32, options: ServerOptions) async throws(SeneschalError) -> ChildProcess {
        var pipeFDs: [Int32] = [-1, -1]
        guard pipe2(&pipeFDs, O_CLOEXEC) == 0 else { throw .system("pipe", errno) }
        defer { close(pipeFDs[0]) }
        var arguments = [
            "--folder", folder, "--listen-fd", "3", "--ready-fd", "4", "--uid", "\(options.uid)", "--gid",
            "\(options.gid)",
        ]
        if case .vsock(_, let cid) = options.endpoint { arguments += ["--accept-cid", "\(cid)"] }
        let process: ChildProcess
        do {
            process = try ChildProcess.spawn(
                executable: config.serverPath, arguments: arguments, descriptors: [listener, pipeFDs[1]])
        } catch {
            close(pipeFDs[1])
            throw .failed("starting \(config.serverPath): \(error)")
        }
        close(pipeFDs[1])
        let readFD = pipeFDs[0]
        let timeout = config.readyTimeoutSeconds
        let said = await Task.detached { Self.readLine(readFD, timeoutSeconds: timeout) }.value
        guard said == "ready" else {
            process.signal(SIGKILL)
            let termination = await process.terminated()
            throw .failed(
                "the 9P server did not start (\(said == nil ? "it \(termination)" : "it said \(said ?? "")"); its log is in the journal)"
            )
        }
        return process
    }

    /// One short line from `fd`, or nil on EOF or after `timeoutSeconds`.
    nonisolated static func readLine(_ fd: Int32, timeoutSeconds: Double) -> String? {
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        var bytes: [UInt8] = []
        let deadline = ContinuousClock.now + .milliseconds(Int(timeoutSeconds * 1000))
        while ContinuousClock.now < deadline, bytes.count < 256 {
            let left = deadline - ContinuousClock.now
            let ms = Int32(
                clamping: left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000)
            let ready = poll(&entry, 1, max(1, ms))
            if ready < 0, errno == EINTR { continue }
            guard ready > 0 else { return nil }
            var byte: UInt8 = 0
            guard read(fd, &byte, 1) == 1 else { return nil }
            if byte == 10 { return String(decoding: bytes, as: UTF8.self) }
            bytes.append(byte)
        }
        return nil
    }

    /// When a server's process ends on its own, its shares and folder go.
    func watch(_ handle: UInt32, _ process: ChildProcess) {
        Task { [weak self] in
            let termination = await process.terminated()
            await self?.serverEnded(handle, pid: process.pid, termination)
        }
    }

    private func serverEnded(_ handle: UInt32, pid: Int32, _ termination: ChildProcess.Termination) {
        guard let server = servers[handle], server.process.pid == pid else { return }
        servers[handle] = nil
        cleanUp(server)
        log("server \(handle) (pid \(pid)) \(termination); its shares are gone")
    }

    func cleanUp(_ server: Server) {
        removeFolder(server.folder)
        if let path = server.socketPath { unlink(path) }
    }

    // MARK: - Mount points

    static func makeMountPoint(_ path: String, directory: Bool) throws(SeneschalError) {
        if directory {
            guard mkdir(path, 0o755) == 0 else { throw .system("creating \(path)", errno) }
        } else {
            let fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw .system("creating \(path)", errno) }
            close(fd)
        }
    }

    static func removeMountPoint(_ path: String) {
        if rmdir(path) != 0 { unlink(path) }
    }
}
