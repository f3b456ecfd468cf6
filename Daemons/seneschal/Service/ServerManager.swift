import CLinux
import EventLoop
import Foundation
import Processes

#if canImport(Glibc)
    import Glibc
#endif

/// Settings of a seneschal.
public struct SeneschalConfiguration: Sendable {
    /// Where each server gets its folder (`servers/<handle>`).
    public var runtimeDirectory = "/run/seneschal"
    /// The per-server executable.
    public var serverPath = "/usr/local/libexec/vmtools/seneschal-server"
    /// Seconds a new server may take to confine itself and say it is ready.
    public var readyTimeoutSeconds = 10.0

    public init() {}

    var serversDirectory: String { runtimeDirectory + "/servers" }
}

/// One share of a server.
public struct ShareInfo: Sendable, Equatable {
    /// The name in the server's root; the guest sees it at `<mount point>/<name>`.
    public var name: String
    public var hostPath: String
    public var writable: Bool
}

/// One running server.
public struct ServerInfo: Sendable, Equatable {
    public var handle: UInt32
    public var pid: Int32
    public var uid: UInt32
    public var gid: UInt32
    /// "socket:<path>", "fd", or "vsock:<port>@<cid>".
    public var endpoint: String
    public var shares: [ShareInfo]
}

/// seneschal's servers: starts each as a sandboxed `seneschal-server` process with a folder of
/// its own (a small tmpfs, shared so that the share mounts made here reach the server's own
/// mount namespace), mounts shares into it, and cleans up when a server is stopped or dies.
public actor ServerManager {
    struct Server {
        var info: ServerInfo
        let process: ChildProcess
        let folder: String
        /// The socket file seneschal made (removed with the server).
        let socketPath: String?
        var sharesByName: [String: ShareInfo] = [:]
    }

    let config: SeneschalConfiguration
    let log: @Sendable (String) -> Void
    var servers: [UInt32: Server] = [:]
    /// Handles start at a random point, so that a handle kept across a seneschal restart (by
    /// concierge, for a VM) does not name another server.
    var nextHandle = UInt32.random(in: 1..<(1 << 24))

    public init(config: SeneschalConfiguration, log: @escaping @Sendable (String) -> Void = { _ in })
        throws(SeneschalError)
    {
        self.config = config
        self.log = log
        do {
            try FileManager.default.createDirectory(
                atPath: config.serversDirectory, withIntermediateDirectories: true,
                attributes: [.posixPermissions: 0o755])
        } catch {
            throw .failed("creating \(config.serversDirectory): \(error)")
        }
        Self.removeLeftovers(in: config.serversDirectory)
    }

    /// Folders of servers a previous seneschal left behind (it was killed): their mounts go.
    static func removeLeftovers(in directory: String) {
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] {
            let folder = directory + "/" + entry
            _ = clinux_unmount_detached(folder)
            try? FileManager.default.removeItem(atPath: folder)
        }
    }

    // MARK: - Servers

    /// Starts a server; returns its handle once it runs in its sandbox.
    public func start(_ options: ServerOptions) async throws(SeneschalError) -> UInt32 {
        try options.validate()
        let handle = nextHandle
        nextHandle = nextHandle == UInt32.max ? 1 : nextHandle + 1
        let folder = "\(config.serversDirectory)/\(handle)"
        try makeFolder(folder)
        var socketPath: String?
        do {
            let (listener, description) = try openEndpoint(options)
            defer { close(listener) }
            if case .socket(let path) = options.endpoint { socketPath = path }
            let process = try await spawn(folder: folder, listener: listener, options: options)
            servers[handle] = Server(
                info: ServerInfo(
                    handle: handle, pid: process.pid, uid: options.uid, gid: options.gid, endpoint: description,
                    shares: []),
                process: process, folder: folder, socketPath: socketPath)
            watch(handle, process)
            log("server \(handle) (pid \(process.pid), uid \(options.uid)) serves on \(description)")
            return handle
        } catch {
            if let socketPath { unlink(socketPath) }
            removeFolder(folder)
            throw error
        }
    }

    /// Stops server `handle` and removes its shares; callers other than root only their own.
    public func stop(_ handle: UInt32, callerUID: UInt32 = 0) async throws(SeneschalError) {
        _ = try owned(handle, by: callerUID)
        guard let server = servers.removeValue(forKey: handle) else { throw noServer(handle) }
        server.process.signal(SIGTERM)
        if await server.process.terminated(within: 2) == nil {
            server.process.signal(SIGKILL)
            _ = await server.process.terminated()
        }
        cleanUp(server)
        log("server \(handle) stopped")
    }

    /// Stops every server (seneschal is stopping).
    public func stopAll() async {
        for handle in servers.keys.sorted() { try? await stop(handle) }
    }

    /// The servers `callerUID` may see: all for root, their own for others.
    public func list(callerUID: UInt32 = 0) -> [ServerInfo] {
        servers.keys.sorted().compactMap { servers[$0]?.info }.filter { callerUID == 0 || $0.uid == callerUID }
    }

    // MARK: - Shares

    /// Shares `hostPath` through server `handle` as `name` (default: the path's last
    /// component); returns the path the guest sees, relative to where it mounted the server
    /// ("/name"). Root may share anything; others only what they own, through servers that run
    /// as them.
    public func share(
        _ handle: UInt32, hostPath: String, name: String? = nil, writable: Bool = false, callerUID: UInt32
    ) throws(SeneschalError) -> String {
        var server = try owned(handle, by: callerUID)
        let source = try SharePath(hostPath)
        guard callerUID == 0 || source.owner == callerUID else {
            throw .init(
                .accessDenied,
                "uid \(callerUID) may share only what it owns (\(source.path) belongs to uid \(source.owner))")
        }
        let shareName = name ?? (source.path == "/" ? "root" : String(source.path.split(separator: "/").last ?? "root"))
        try Self.validate(name: shareName)
        guard server.sharesByName[shareName] == nil else {
            throw .init(.alreadyExists, "server \(handle) already shares something as \(shareName)")
        }
        if let existing = server.sharesByName.values.first(where: { $0.hostPath == source.path }) {
            throw .init(.alreadyExists, "server \(handle) already shares \(source.path) as \(existing.name)")
        }
        let target = "\(server.folder)/shares/\(shareName)"
        try Self.makeMountPoint(target, directory: source.isDirectory)
        do { try source.mount(at: target, writable: writable) } catch {
            Self.removeMountPoint(target)
            throw error
        }
        let share = ShareInfo(name: shareName, hostPath: source.path, writable: writable)
        server.sharesByName[shareName] = share
        server.info.shares = server.sharesByName.values.sorted { $0.name < $1.name }
        servers[handle] = server
        log("server \(handle) shares \(source.path) as /\(shareName)\(writable ? " (writable)" : " (read-only)")")
        return "/" + shareName
    }

    /// Ends a share, named as SharePath returned it ("/name"), by its name, or by its host path.
    public func unshare(_ handle: UInt32, _ path: String, callerUID: UInt32 = 0) throws(SeneschalError) {
        var server = try owned(handle, by: callerUID)
        let name = path.hasPrefix("/") ? String(path.dropFirst()) : path
        guard
            let share = server.sharesByName[name]
                ?? server.sharesByName.values.first(where: { $0.hostPath == path })
        else {
            throw .init(.notFound, "server \(handle) has no share \(path)")
        }
        let target = "\(server.folder)/shares/\(share.name)"
        let result = clinux_unmount_detached(target)
        guard result == 0 else { throw .system("unmounting \(target)", -result) }
        Self.removeMountPoint(target)
        server.sharesByName[share.name] = nil
        server.info.shares = server.sharesByName.values.sorted { $0.name < $1.name }
        servers[handle] = server
        log("server \(handle) no longer shares \(share.hostPath)")
    }

    public func shares(_ handle: UInt32, callerUID: UInt32 = 0) throws(SeneschalError) -> [ShareInfo] {
        try owned(handle, by: callerUID).info.shares
    }

    /// A share's name is one path component a guest can use.
    static func validate(name: String) throws(SeneschalError) {
        guard !name.isEmpty, name.utf8.count <= 255, name != ".", name != "..", !name.contains("/"),
            !name.utf8.contains(0)
        else {
            throw .invalid("\"\(name)\" cannot name a share: one path component, not . or .., at most 255 bytes")
        }
    }

    /// Server `handle`, if `callerUID` may act on it: root on any, others on servers that run
    /// as them.
    private func owned(_ handle: UInt32, by callerUID: UInt32) throws(SeneschalError) -> Server {
        guard let server = servers[handle] else { throw noServer(handle) }
        guard callerUID == 0 || server.info.uid == callerUID else {
            throw .init(
                .accessDenied,
                "server \(handle) serves as uid \(server.info.uid); uid \(callerUID) may use only its own servers")
        }
        return server
    }

    private func noServer(_ handle: UInt32) -> SeneschalError {
        .init(.notFound, "no server with handle \(handle)")
    }
}
