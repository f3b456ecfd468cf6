import CLinux

#if canImport(Glibc)
    import Glibc
#endif

// MARK: - The kernel's requests

extension StandInFileSystem {
    func handle(_ request: FuseRequest) {
        switch request.opcode {
        case FUSE_INIT.rawValue: initialize(request)
        case FUSE_LOOKUP.rawValue: lookUp(request)
        case FUSE_GETATTR.rawValue: getAttributes(request)
        case FUSE_SETATTR.rawValue: setAttributes(request)
        case FUSE_OPEN.rawValue: open(request)
        case FUSE_READ.rawValue: read(request)
        case FUSE_WRITE.rawValue: write(request)
        case FUSE_RELEASE.rawValue: release(request)
        case FUSE_FLUSH.rawValue, FUSE_FSYNC.rawValue, FUSE_RELEASEDIR.rawValue: channel.reply(request.unique)
        case FUSE_OPENDIR.rawValue:
            guard request.node == UInt64(FUSE_ROOT_ID) else { return channel.reply(request.unique, error: ENOTDIR) }
            channel.reply(request.unique, with: fuse_open_out())
        case FUSE_READDIR.rawValue:
            channel.reply(request.unique)  // nothing to list: files are reached by descriptors only
        case FUSE_STATFS.rawValue:
            var out = fuse_statfs_out()
            out.st.bsize = 4096
            out.st.frsize = 4096
            out.st.namelen = 255
            channel.reply(request.unique, with: out)
        case FUSE_FORGET.rawValue, FUSE_BATCH_FORGET.rawValue, FUSE_INTERRUPT.rawValue, FUSE_DESTROY.rawValue:
            break  // no reply expected; replies to interrupted requests still come when the backend answers
        default:
            channel.reply(request.unique, error: ENOSYS)
        }
    }

    private func initialize(_ request: FuseRequest) {
        guard let input = request.arguments(fuse_init_in.self), input.major == FUSE_KERNEL_VERSION else {
            return channel.reply(request.unique, error: EPROTO)
        }
        var out = fuse_init_out()
        out.major = UInt32(FUSE_KERNEL_VERSION)
        out.minor = min(input.minor, UInt32(FUSE_KERNEL_MINOR_VERSION))
        out.max_readahead = input.max_readahead
        // Requests as large as the backend serves at once: max_pages raises the kernel's 32 pages.
        out.flags = input.flags & UInt32(FUSE_BIG_WRITES | FUSE_MAX_PAGES)
        out.max_background = 16
        out.congestion_threshold = 12
        out.max_write = UInt32(maxIO)
        out.time_gran = 1
        out.max_pages = UInt16(max(1, maxIO / 4096))
        channel.reply(request.unique, with: out)
    }

    private func lookUp(_ request: FuseRequest) {
        let name = String(decoding: request.body.prefix { $0 != 0 }, as: UTF8.self)
        let found = state.withLock { state -> (UInt64, File)? in
            guard request.node == UInt64(FUSE_ROOT_ID), let node = state.nodes[name], let file = state.files[node]
            else { return nil }
            return (node, file)
        }
        guard let (node, file) = found else { return channel.reply(request.unique, error: ENOENT) }
        var out = fuse_entry_out()
        out.nodeid = node
        out.attr = attributes(node: node, size: file.size, writable: file.writable)
        channel.reply(request.unique, with: out)
    }

    private func getAttributes(_ request: FuseRequest) {
        let node = request.node
        if node == UInt64(FUSE_ROOT_ID) {
            var out = fuse_attr_out()
            out.attr = rootAttributes()
            return channel.reply(request.unique, with: out)
        }
        guard let file = file(node), let backend else { return channel.reply(request.unique, error: ENOENT) }
        // The owner's size, not a cached one: the file may have grown there.
        backend.size(file.id) { [self] result in
            switch result {
            case .success(let size):
                updateSize(node, size)
                var out = fuse_attr_out()
                out.attr = attributes(node: node, size: size, writable: file.writable)
                channel.reply(request.unique, with: out)
            case .failure(let error):
                channel.reply(request.unique, error: error.code)
            }
        }
    }

    private func setAttributes(_ request: FuseRequest) {
        let node = request.node
        guard let input = request.arguments(fuse_setattr_in.self) else {
            return channel.reply(request.unique, error: EINVAL)
        }
        guard let file = file(node), let backend else { return channel.reply(request.unique, error: ENOENT) }
        guard input.valid & UInt32(FATTR_SIZE) != 0 else {
            // Mode, owner and times belong to the owner's file: they are not changed from here.
            var out = fuse_attr_out()
            out.attr = attributes(node: node, size: file.size, writable: file.writable)
            return channel.reply(request.unique, with: out)
        }
        guard file.writable else { return channel.reply(request.unique, error: EACCES) }
        let length = input.size
        backend.truncate(file.id, length: length) { [self] result in
            switch result {
            case .success:
                updateSize(node, length)
                var out = fuse_attr_out()
                out.attr = attributes(node: node, size: length, writable: file.writable)
                channel.reply(request.unique, with: out)
            case .failure(let error):
                channel.reply(request.unique, error: error.code)
            }
        }
    }

    private func open(_ request: FuseRequest) {
        guard let input = request.arguments(fuse_open_in.self) else {
            return channel.reply(request.unique, error: EINVAL)
        }
        guard let file = file(request.node) else { return channel.reply(request.unique, error: ENOENT) }
        let access = Int32(bitPattern: input.flags) & O_ACCMODE
        guard access == O_RDONLY || file.writable else { return channel.reply(request.unique, error: EACCES) }
        var out = fuse_open_out()
        out.fh = request.node
        out.open_flags = UInt32(FOPEN_DIRECT_IO)
        channel.reply(request.unique, with: out)
    }

    private func read(_ request: FuseRequest) {
        guard let input = request.arguments(fuse_read_in.self) else {
            return channel.reply(request.unique, error: EINVAL)
        }
        guard let file = file(request.node), let backend else { return channel.reply(request.unique, error: EBADF) }
        backend.read(file.id, offset: input.offset, count: min(Int(input.size), maxIO)) { [self] result in
            switch result {
            case .success(let bytes): channel.reply(request.unique, body: bytes)
            case .failure(let error): channel.reply(request.unique, error: error.code)
            }
        }
    }

    private func write(_ request: FuseRequest) {
        guard let input = request.arguments(fuse_write_in.self) else {
            return channel.reply(request.unique, error: EINVAL)
        }
        let data = request.trailing(after: fuse_write_in.self)
        guard data.count >= Int(input.size), Int(input.size) <= maxIO else {
            return channel.reply(request.unique, error: EINVAL)
        }
        guard let file = file(request.node), let backend else { return channel.reply(request.unique, error: EBADF) }
        guard file.writable else { return channel.reply(request.unique, error: EBADF) }
        let node = request.node
        let offset = input.offset
        backend.write(file.id, offset: offset, bytes: Array(data.prefix(Int(input.size)))) { [self] result in
            switch result {
            case .success(let written):
                state.withLock { state in
                    if let size = state.files[node]?.size, offset + UInt64(written) > size {
                        state.files[node]?.size = offset + UInt64(written)
                    }
                }
                var out = fuse_write_out()
                out.size = UInt32(written)
                channel.reply(request.unique, with: out)
            case .failure(let error):
                channel.reply(request.unique, error: error.code)
            }
        }
    }

    private func release(_ request: FuseRequest) {
        channel.reply(request.unique)
        let released = state.withLock { state -> (File, StandInBackend?)? in
            guard let file = state.files.removeValue(forKey: request.node) else { return nil }
            state.nodes[file.name] = nil
            return (file, state.backend)
        }
        if let (file, backend) = released { backend?.released(file.id) }
    }
}
