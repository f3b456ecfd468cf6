import CLinux
import Fuse

#if canImport(Glibc)
    import Glibc
#endif

// MARK: - Regular files passed as descriptors
//
// The sender keeps the real file under a handle and serves Pread, Pwrite, Fstat and Ftruncate
// on it; the receiver hands its local recipient a descriptor into a FUSE file system of stand-in
// files (Fuse/StandInFileSystem) whose I/O becomes those requests. The recipient's last close
// sends Close, and the sender closes the real file.

/// A file request this proxy sent and waits on, by cookie.
enum PendingFileRequest: Sendable {
    case read(@Sendable (Result<[UInt8], FuseErrno>) -> Void)
    case write(@Sendable (Result<Int, FuseErrno>) -> Void)
    case size(@Sendable (Result<UInt64, FuseErrno>) -> Void)
    case truncate(@Sendable (Result<Void, FuseErrno>) -> Void)

    /// Fails the waiting request (the link ended).
    func fail(_ code: Int32) {
        switch self {
        case .read(let reply): reply(.failure(FuseErrno(code)))
        case .write(let reply): reply(.failure(FuseErrno(code)))
        case .size(let reply): reply(.failure(FuseErrno(code)))
        case .truncate(let reply): reply(.failure(FuseErrno(code)))
        }
    }
}

extension MojoLink {
    // MARK: Sender: serving the real file

    /// Keeps `fd`, a regular file a local process sent, under a new handle and describes it.
    func serve(file fd: Int32) -> Vmtools_Mojo_FileDescriptor? {
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            close(fd)
            return nil
        }
        let handle = allocateID()
        servedFiles[handle] = fd
        var described = Vmtools_Mojo_FileDescriptor()
        described.type = .regularFile
        described.handle = handle
        described.fileSize = UInt64(max(0, info.st_size))
        described.flags = fcntl(fd, F_GETFL) & O_ACCMODE
        return described
    }

    func answer(_ request: Vmtools_Mojo_PreadRequest) {
        var response = Vmtools_Mojo_Message()
        response.preadResponse.cookie = request.cookie
        if let fd = servedFiles[request.handle] {
            var buffer = [UInt8](repeating: 0, count: Int(request.count))
            let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(request.offset)) }
            if n >= 0 {
                response.preadResponse.blob = .init(buffer[0..<n])
            } else {
                response.preadResponse.errorCode = errno
            }
        } else {
            response.preadResponse.errorCode = EBADF
        }
        send(response)
    }

    func answer(_ request: Vmtools_Mojo_PwriteRequest) {
        var response = Vmtools_Mojo_Message()
        response.pwriteResponse.cookie = request.cookie
        if let fd = servedFiles[request.handle] {
            let n = request.blob.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(request.offset)) }
            if n >= 0 {
                response.pwriteResponse.bytesWritten = UInt64(n)
            } else {
                response.pwriteResponse.errorCode = errno
            }
        } else {
            response.pwriteResponse.errorCode = EBADF
        }
        send(response)
    }

    func answer(_ request: Vmtools_Mojo_FstatRequest) {
        var response = Vmtools_Mojo_Message()
        response.fstatResponse.cookie = request.cookie
        var info = stat()
        if let fd = servedFiles[request.handle] {
            if fstat(fd, &info) == 0 {
                response.fstatResponse.size = UInt64(max(0, info.st_size))
            } else {
                response.fstatResponse.errorCode = errno
            }
        } else {
            response.fstatResponse.errorCode = EBADF
        }
        send(response)
    }

    func answer(_ request: Vmtools_Mojo_FtruncateRequest) {
        var response = Vmtools_Mojo_Message()
        response.ftruncateResponse.cookie = request.cookie
        if let fd = servedFiles[request.handle] {
            if ftruncate(fd, off_t(request.length)) != 0 { response.ftruncateResponse.errorCode = errno }
        } else {
            response.ftruncateResponse.errorCode = EBADF
        }
        send(response)
    }

    /// The receiver closed its stand-in: the real file goes. false when `handle` is no served file.
    func closeServedFile(_ handle: Int64) -> Bool {
        guard let fd = servedFiles.removeValue(forKey: handle) else { return false }
        close(fd)
        return true
    }

    // MARK: Receiver: the stand-in

    /// A descriptor into the stand-in file system for the other side's file; nil (logged) when
    /// this proxy cannot serve stand-ins (no FUSE, not privileged).
    func standIn(for described: Vmtools_Mojo_FileDescriptor) -> Int32? {
        guard let files = standInFiles() else { return nil }
        let access = described.flags & O_ACCMODE
        let path = files.add(described.handle, size: described.fileSize, writable: access != O_RDONLY)
        // LOOKUP and OPEN are answered on the file system's own thread, never this one.
        let fd = open(path, access | O_CLOEXEC)
        guard fd >= 0 else {
            log("cannot open the stand-in for handle \(described.handle): \(String(cString: strerror(errno)))")
            return nil
        }
        return fd
    }

    /// The stand-in file system, mounted on first use in a new directory under `filesDirectory`.
    func standInFiles() -> StandInFileSystem? {
        if let standIns { return standIns }
        guard let filesDirectory else {
            log("a regular file was passed, but this proxy has no directory for stand-in files: refused")
            return nil
        }
        mkdir(filesDirectory, 0o700)
        var template = Array((filesDirectory + "/files.XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else {
            log("cannot make a directory under \(filesDirectory): \(String(cString: strerror(errno)))")
            return nil
        }
        let directory = String(cString: made)
        do {
            let files = try StandInFileSystem(mountingAt: directory, backend: self, maxIO: MojoFrame.maxPayload)
            standIns = files
            return files
        } catch {
            rmdir(directory)
            log("cannot serve stand-in files (regular files are refused): \(error)")
            return nil
        }
    }

    /// Unmounts the stand-ins: descriptors still open into them fail from now on.
    func stopStandIns() {
        guard let files = standIns else { return }
        standIns = nil
        files.stop()
        rmdir(files.mountPoint)
        for (_, pending) in fileRequests { pending.fail(EIO) }
        fileRequests = [:]
    }

    /// A file request to the sender, on the loop thread; its answer goes to `pending`.
    func request(
        _ pending: PendingFileRequest, _ fill: @escaping @Sendable (Int64, inout Vmtools_Mojo_Message) -> Void
    ) {
        onLoop { [self] in
            guard !linkEnded else { return pending.fail(EIO) }
            let cookie = allocateID()
            fileRequests[cookie] = pending
            var message = Vmtools_Mojo_Message()
            fill(cookie, &message)
            send(message)
        }
    }

    /// The sender's answer to one of our file requests.
    func answered(cookie: Int64, error: Int32, _ deliver: (PendingFileRequest) -> Bool) throws(MojoFrameError) {
        guard let pending = fileRequests.removeValue(forKey: cookie) else {
            throw .invalid("a file response to cookie \(cookie), which this proxy never sent")
        }
        if error != 0 {
            pending.fail(error)
        } else if !deliver(pending) {
            throw .invalid("a file response of the wrong kind for cookie \(cookie)")
        }
    }
}

// MARK: - StandInBackend

extension MojoLink: StandInBackend {
    public func read(
        _ id: Int64, offset: UInt64, count: Int, reply: @escaping @Sendable (Result<[UInt8], FuseErrno>) -> Void
    ) {
        request(.read(reply)) { cookie, message in
            message.preadRequest.cookie = cookie
            message.preadRequest.handle = id
            message.preadRequest.offset = offset
            message.preadRequest.count = UInt64(min(count, MojoFrame.maxPayload))
        }
    }

    public func write(
        _ id: Int64, offset: UInt64, bytes: [UInt8], reply: @escaping @Sendable (Result<Int, FuseErrno>) -> Void
    ) {
        request(.write(reply)) { cookie, message in
            message.pwriteRequest.cookie = cookie
            message.pwriteRequest.handle = id
            message.pwriteRequest.offset = offset
            message.pwriteRequest.blob = .init(bytes)
        }
    }

    public func size(_ id: Int64, reply: @escaping @Sendable (Result<UInt64, FuseErrno>) -> Void) {
        request(.size(reply)) { cookie, message in
            message.fstatRequest.cookie = cookie
            message.fstatRequest.handle = id
        }
    }

    public func truncate(_ id: Int64, length: UInt64, reply: @escaping @Sendable (Result<Void, FuseErrno>) -> Void) {
        request(.truncate(reply)) { cookie, message in
            message.ftruncateRequest.cookie = cookie
            message.ftruncateRequest.handle = id
            message.ftruncateRequest.length = length
        }
    }

    public func released(_ id: Int64) {
        onLoop { [self] in
            guard !linkEnded else { return }
            var close = Vmtools_Mojo_Message()
            close.close.handle = id
            send(close)
        }
    }
}
