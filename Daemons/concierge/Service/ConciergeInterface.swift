import DBus

/// `org.vmtools.Concierge` at `/org/vmtools/Concierge`: VMs and disk images over D-Bus with
/// native types (ARCHITECTURE.md), so `busctl call` drives every method by hand:
///
///     busctl call org.vmtools.Concierge /org/vmtools/Concierge org.vmtools.Concierge \
///         StartVm sa{sv} demo 2 cpus u 2 memory_mib u 1024
public enum ConciergeInterface {
    public static let name = "org.vmtools.Concierge"
    public static let path = "/org/vmtools/Concierge"

    /// StartVm's option keys and their types.
    public static let startOptions: [String: String] = [
        "image": "s", "kernel": "s", "initrd": "s", "disks": "as", "writable_disks": "as", "cpus": "u",
        "memory_mib": "u", "params": "s", "root": "s", "timeout_s": "u", "mojo_channels": "a(uss)",
    ]

    /// The interface, served by `manager` and `disks`, with property `RunningVms` read from
    /// `runningVMs` (on the bus thread: a snapshot, see ``ConciergeSignals``); `authorize` runs
    /// before every method (the bus policy already keeps strangers out; this is the second lock).
    public static func make(
        manager: VMManager, disks: DiskImages, runningVMs: @escaping @Sendable () -> [String] = { [] },
        authorize: @escaping @Sendable (DBusSender) throws(DBusError) -> Void
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
        method("StartVm", in: "sa{sv}", out: "a{sv}", inputNames: ["name", "options"], outputNames: ["info"]) { call in
            var options = try vmOptions(name: try call.argument(0, as: String.self), try call.options(1))
            options.owner = call.sender.uid ?? 0
            return [dictionary(try await manager.start(options))]
        }
        method("StopVm", in: "s", inputNames: ["name"]) { call in
            try await manager.stop(try call.argument(0, as: String.self))
            return []
        }
        method("StopAllVms") { _ in
            await manager.stopAll()
            return []
        }
        method("GetVmInfo", in: "s", out: "a{sv}", inputNames: ["name"], outputNames: ["info"]) { call in
            [dictionary(try await manager.info(try call.argument(0, as: String.self)))]
        }
        method("ListVms", out: "aa{sv}", outputNames: ["vms"]) { _ in
            [.array(element: "a{sv}", await manager.list().map(dictionary))]
        }
        method(
            "CreateDiskImage", in: "sta{sv}", out: "s", inputNames: ["name", "size_bytes", "options"],
            outputNames: ["path"]
        ) { call in
            let options = try call.options(2)
            try options.rejectUnknown(["from_image"])
            let path = try disks.create(
                try call.argument(0, as: String.self), sizeBytes: try call.argument(1, as: UInt64.self),
                fromImage: try options.optional("from_image", as: String.self))
            return [.string(path)]
        }
        method("DestroyDiskImage", in: "s", inputNames: ["name"]) { call in
            let name = try call.argument(0, as: String.self)
            if VMOptions.validName(name), let user = await manager.vmUsing(disk: disks.path(of: name)) {
                throw ConciergeError(.busy, "the disk \(name) is in use by VM \(user)")
            }
            try disks.destroy(name)
            return []
        }
        method("ListDiskImages", out: "aa{sv}", outputNames: ["disks"]) { _ in
            [
                .array(
                    element: "a{sv}",
                    try disks.list().map { disk in
                        .options([
                            "name": .string(disk.name), "path": .string(disk.path),
                            "size_bytes": .uint64(disk.sizeBytes),
                            "allocated_bytes": .uint64(disk.allocatedBytes),
                        ])
                    })
            ]
        }
        interface.property("RunningVms", of: [String].self, get: runningVMs)
        interface.signal("VmStarting", signature: "s", names: ["name"])
        interface.signal("VmStarted", signature: "sa{sv}", names: ["name", "info"])
        interface.signal("VmStopping", signature: "s", names: ["name"])
        interface.signal("VmStopped", signature: "ss", names: ["name", "reason"])
        return interface
    }

    /// The signal that tells of `event`.
    public static func signal(for event: VMEvent) -> (member: String, arguments: [DBusValue]) {
        switch event {
        case .starting(let name): return ("VmStarting", [.string(name)])
        case .started(let info): return ("VmStarted", [.string(info.name), dictionary(info)])
        case .stopping(let name): return ("VmStopping", [.string(name)])
        case .stopped(let name, let reason): return ("VmStopped", [.string(name), .string(reason.rawValue)])
        }
    }

    /// StartVm's `a{sv}` as ``VMOptions``; unknown keys and wrong types are InvalidArgs.
    static func vmOptions(name: String, _ options: DBusOptions) throws(DBusError) -> VMOptions {
        try options.rejectUnknown(Set(startOptions.keys))
        var result = VMOptions(name: name)
        result.image = try options.value("image", default: result.image)
        result.kernel = try options.optional("kernel", as: String.self)
        result.initrd = try options.optional("initrd", as: String.self)
        result.disks = try options.value("disks", default: [String]())
        result.writableDisks = try options.value("writable_disks", default: [String]())
        result.cpus = Int(try options.value("cpus", default: UInt32(result.cpus)))
        result.memoryMiB = Int(try options.value("memory_mib", default: UInt32(result.memoryMiB)))
        result.params = try options.value("params", default: "")
        result.root = try options.optional("root", as: String.self)
        result.timeoutSeconds = try options.optional("timeout_s", as: UInt32.self).map(Double.init)
        result.mojoChannels = try options.value("mojo_channels", default: [MojoChannel]())
        return result
    }

    /// A VM's description as `a{sv}`.
    public static func dictionary(_ info: VMInfo) -> DBusValue {
        .options([
            "name": .string(info.name), "state": .string(info.state), "cid": .uint32(info.cid),
            "pid": .uint32(UInt32(bitPattern: info.pid)), "ipv4": .string(info.ipv4),
            "host_ipv4": .string(info.hostIPv4), "netmask": .string(info.netmask), "mac": .string(info.mac),
            "tap": .string(info.tap), "cpus": .uint32(UInt32(info.cpus)), "memory_mib": .uint32(UInt32(info.memoryMiB)),
            "kernel": .string(info.kernel), "vsock_socket": .string(info.vsockSocket),
            "maitred_socket": .string(info.maitredSocket), "shell_socket": .string(info.shellSocket),
            "control_socket": .string(info.controlSocket), "serial_log": .string(info.serialLog),
            "started_at": .double(info.startedAt),
            "seneschal_handle": .uint32(info.shareServer), "shared_folder": .string(info.sharedFolder),
            "mojo_channels": info.mojoChannels.dbusValue,
        ])
    }
}

extension MojoChannel: DBusConvertible {
    public static var dbusSignature: String { "(uss)" }

    public var dbusValue: DBusValue { .structure([.uint32(number), .string(guestSocket), .string(hostSocket)]) }

    public init(dbusValue: DBusValue) throws(DBusError) {
        guard case .structure(let fields) = dbusValue, fields.count == 3, case .uint32(let number) = fields[0],
            case .string(let guestSocket) = fields[1], case .string(let hostSocket) = fields[2]
        else { throw .invalidArgs("expected (uss), got \(dbusValue.signature)") }
        self.init(number: number, guestSocket: guestSocket, hostSocket: hostSocket)
    }
}
