import DBus

#if canImport(Glibc)
    import Glibc
#endif

/// `org.vmtools.Seneschal` at `/org/vmtools/Seneschal`: 9P servers and their shares over D-Bus
/// with native types, so `busctl call` drives every method by hand:
///
///     busctl call org.vmtools.Seneschal /org/vmtools/Seneschal org.vmtools.Seneschal \
///         StartServer a{sv} 1 socket s /run/demo/9p.sock
///     busctl call ... SharePath usa{sv} 1 /srv/photos 1 writable b true
public enum SeneschalInterface {
    public static let name = "org.vmtools.Seneschal"
    public static let path = "/org/vmtools/Seneschal"

    /// StartServer's option keys and their types.
    public static let startOptions: [String: String] = [
        "socket": "s", "fd": "h", "vsock_port": "u", "vsock_cid": "u", "uid": "u", "gid": "u",
    ]

    /// The interface, served by `manager`; `authorize` runs before every method.
    public static func make(
        manager: ServerManager, authorize: @escaping @Sendable (DBusSender) throws(DBusError) -> Void
    ) -> DBusInterface {
        var interface = DBusInterface(name)
        func method(
            _ member: String, in input: String = "", out output: String = "", inputNames: [String] = [],
            outputNames: [String] = [], _ body: @escaping @Sendable (DBusMethodCall) async throws -> [DBusValue]
        ) {
            interface.serviceMethod(
                member, in: input, out: output, inputNames: inputNames, outputNames: outputNames, authorize: authorize,
                body)
        }
        method("StartServer", in: "a{sv}", out: "u", inputNames: ["options"], outputNames: ["handle"]) { call in
            let options = try serverOptions(try call.options(0), caller: try callerUID(call))
            return [.uint32(try await manager.start(options))]
        }
        method("StopServer", in: "u", inputNames: ["handle"]) { call in
            try await manager.stop(try call.argument(0, as: UInt32.self), callerUID: try callerUID(call))
            return []
        }
        method(
            "SharePath", in: "usa{sv}", out: "s", inputNames: ["handle", "path", "options"], outputNames: ["guest_path"]
        ) { call in
            let options = try call.options(2)
            try options.rejectUnknown(["writable", "name"])
            let path = try await manager.share(
                try call.argument(0, as: UInt32.self), hostPath: try call.argument(1, as: String.self),
                name: try options.optional("name", as: String.self),
                writable: try options.value("writable", default: false), callerUID: try callerUID(call))
            return [.string(path)]
        }
        method("UnsharePath", in: "us", inputNames: ["handle", "path"]) { call in
            try await manager.unshare(
                try call.argument(0, as: UInt32.self), try call.argument(1, as: String.self),
                callerUID: try callerUID(call))
            return []
        }
        method("ListShares", in: "u", out: "aa{sv}", inputNames: ["handle"], outputNames: ["shares"]) { call in
            let shares = try await manager.shares(try call.argument(0, as: UInt32.self), callerUID: try callerUID(call))
            return [.array(element: "a{sv}", shares.map(dictionary))]
        }
        method("ListServers", out: "aa{sv}", outputNames: ["servers"]) { call in
            [
                .array(
                    element: "a{sv}",
                    await manager.list(callerUID: try callerUID(call)).map { server in
                        .options([
                            "handle": .uint32(server.handle), "pid": .uint32(UInt32(bitPattern: server.pid)),
                            "uid": .uint32(server.uid), "gid": .uint32(server.gid),
                            "endpoint": .string(server.endpoint),
                            "shares": .array(element: "a{sv}", server.shares.map(dictionary)),
                        ])
                    })
            ]
        }
        return interface
    }

    static func dictionary(_ share: ShareInfo) -> DBusValue {
        .options([
            "name": .string(share.name), "guest_path": .string("/" + share.name), "host_path": .string(share.hostPath),
            "writable": .bool(share.writable),
        ])
    }

    static func callerUID(_ call: DBusMethodCall) throws(DBusError) -> UInt32 {
        guard let uid = call.sender.uid else {
            throw .vmtools("AccessDenied", "the bus did not say who \(call.sender.uniqueName) is")
        }
        return uid
    }

    /// StartServer's `a{sv}`: exactly one of `socket`, `fd` and `vsock_port` (with `vsock_cid`);
    /// `uid`/`gid` default to the caller's, and only root may name another user.
    static func serverOptions(_ options: DBusOptions, caller: UInt32) throws(DBusError) -> ServerOptions {
        try options.rejectUnknown(Set(startOptions.keys))
        let socketPath = try options.optional("socket", as: String.self)
        let fd = try options.optional("fd", as: DBusFileDescriptor.self)
        let port = try options.optional("vsock_port", as: UInt32.self)
        let cid = try options.optional("vsock_cid", as: UInt32.self)
        let endpoint: ServerOptions.Endpoint
        switch (socketPath, fd, port) {
        case (let path?, nil, nil): endpoint = .socket(path: path)
        case (nil, let fd?, nil): endpoint = .descriptor(fd)
        case (nil, nil, let port?):
            guard let cid else { throw .invalidArgs("vsock_port needs vsock_cid, the guest allowed to connect") }
            endpoint = .vsock(port: port, cid: cid)
        default:
            throw .invalidArgs("StartServer needs exactly one of socket (s), fd (h) and vsock_port (u)")
        }
        if cid != nil, port == nil { throw .invalidArgs("vsock_cid without vsock_port") }
        let uid = try options.value("uid", default: caller)
        guard caller == 0 || uid == caller else {
            throw .vmtools("AccessDenied", "uid \(caller) may not start a server as uid \(uid)")
        }
        let defaultGID = getpwuid(uid).map { $0.pointee.pw_gid } ?? uid
        let gid = try options.value("gid", default: defaultGID)
        guard caller == 0 || gid == defaultGID else {
            throw .vmtools("AccessDenied", "uid \(caller) may not start a server as gid \(gid)")
        }
        return ServerOptions(endpoint: endpoint, uid: uid, gid: gid)
    }
}
