import DBus
import GuestProtocol

/// `org.vmtools.Cicerone` at `/org/vmtools/Cicerone`: containers in VMs and their
/// applications, with native D-Bus types so that `busctl call` drives every method:
///
///     busctl call org.vmtools.Cicerone /org/vmtools/Cicerone org.vmtools.Cicerone \
///         CreateContainer ssa{sv} demo penguin 0
///     busctl call ... StartContainer ssa{sv} demo penguin 0
///     busctl call ... LaunchApplication ssa{sv} demo penguin 1 desktop_file_id s org.gnome.gedit.desktop
public enum CiceroneInterface {
    public static let name = "org.vmtools.Cicerone"
    public static let path = "/org/vmtools/Cicerone"

    /// Members only concierge (root) calls.
    public static let conciergeMembers: Set<String> = ["NotifyVmStarted", "NotifyVmStopped"]

    /// The interface, served by `manager`. `authorize` vets every caller; concierge's
    /// notifications are for root alone.
    public static func make(
        manager: CiceroneManager, authorize: @escaping @Sendable (DBusSender) throws(DBusError) -> Void
    ) -> DBusInterface {
        var interface = DBusInterface(name)
        func method(
            _ member: String, in input: String = "", out output: String = "", inputNames: [String] = [],
            outputNames: [String] = [], _ body: @escaping @Sendable (DBusMethodCall) async throws -> [DBusValue]
        ) {
            let rootOnly = conciergeMembers.contains(member)
            interface.serviceMethod(
                member, in: input, out: output, inputNames: inputNames, outputNames: outputNames,
                authorize: { sender throws(DBusError) in
                    if rootOnly {
                        guard sender.uid == 0 else {
                            throw .vmtools("AccessDenied", "only root (concierge) may call \(member)")
                        }
                    }
                    try authorize(sender)
                }, body)
        }
        @Sendable func key(_ call: DBusMethodCall) throws(DBusError) -> ContainerKey {
            ContainerKey(vm: try call.argument(0, as: String.self), name: try call.argument(1, as: String.self))
        }

        // MARK: concierge's notifications
        method("NotifyVmStarted", in: "sa{sv}", inputNames: ["vm", "info"]) { call in
            let name = try call.argument(0, as: String.self)
            try await manager.vmStarted(try GuestVM(name: name, info: try call.options(1)))
            return []
        }
        method("NotifyVmStopped", in: "s", inputNames: ["vm"]) { call in
            await manager.vmStopped(try call.argument(0, as: String.self))
            return []
        }

        // MARK: containers
        method("CreateContainer", in: "ssa{sv}", inputNames: ["vm", "container", "options"]) { call in
            let key = try key(call)
            let options = try call.options(2)
            try options.rejectUnknown(["image", "changes_dir", "hostname"])
            try await manager.create(
                ContainerDefinition(
                    vm: key.vm, name: key.name, image: try options.value("image", default: "/"),
                    changesDirectory: try options.value(
                        "changes_dir", default: ContainerDefinition.defaultChangesDirectory(of: key.name)),
                    hostname: try options.value("hostname", default: key.name)))
            return []
        }
        method("DestroyContainer", in: "ss", inputNames: ["vm", "container"]) { call in
            try await manager.destroy(try key(call))
            return []
        }
        method(
            "StartContainer", in: "ssa{sv}", out: "u", inputNames: ["vm", "container", "options"], outputNames: ["pid"]
        ) { call in
            try call.options(2).rejectUnknown([])
            return [.uint32(try await manager.start(try key(call)))]
        }
        method("StopContainer", in: "ssa{sv}", inputNames: ["vm", "container", "options"]) { call in
            let options = try call.options(2)
            try options.rejectUnknown(["grace_s"])
            try await manager.stop(try key(call), graceSeconds: try options.value("grace_s", default: UInt32(10)))
            return []
        }
        method("ListContainers", in: "s", out: "aa{sv}", inputNames: ["vm"], outputNames: ["containers"]) { call in
            let containers = await manager.list(vm: try call.argument(0, as: String.self))
            return [.array(element: "a{sv}", containers.map(dictionary))]
        }
        method("GetContainerToken", in: "ss", out: "s", inputNames: ["vm", "container"], outputNames: ["token"]) {
            call in
            [.string(try await manager.token(try key(call)))]
        }

        // MARK: applications
        method(
            "LaunchApplication", in: "ssa{sv}", out: "au", inputNames: ["vm", "container", "options"],
            outputNames: ["pids"]
        ) { call in
            let options = try call.options(2)
            try options.rejectUnknown(["desktop_file_id", "argv", "files", "locale"])
            let pids = try await manager.launch(
                try key(call), desktopFileID: try options.value("desktop_file_id", default: ""),
                argv: try options.value("argv", default: [String]()),
                files: try options.value("files", default: [String]()), locale: try options.value("locale", default: "")
            )
            return [.array(pids)]
        }
        method(
            "ListApplications", in: "ss", out: "aa{sv}", inputNames: ["vm", "container"],
            outputNames: ["applications"]
        ) { call in
            let applications = try await manager.applications(try key(call))
            return [.array(element: "a{sv}", applications.map(dictionary))]
        }
        method(
            "GetApplicationIcon", in: "sssuu", out: "ays",
            inputNames: ["vm", "container", "desktop_file_id", "size", "scale"], outputNames: ["icon", "format"]
        ) { call in
            let icon = try await manager.icon(
                try key(call), desktopFileID: try call.argument(2, as: String.self),
                size: try call.argument(3, as: UInt32.self), scale: try call.argument(4, as: UInt32.self))
            return [.array(icon.content), .string(icon.format)]
        }

        // MARK: signals
        interface.signal("ContainerStarted", signature: "ss", names: ["vm", "container"])
        interface.signal("ContainerStopped", signature: "sss", names: ["vm", "container", "reason"])
        interface.signal("ApplicationListChanged", signature: "ssu", names: ["vm", "container", "count"])
        interface.signal("OpenUrlRequested", signature: "sss", names: ["vm", "container", "url"])
        return interface
    }

    /// The signal for `event`: its member and arguments.
    public static func signal(for event: ContainerEvent) -> (member: String, arguments: [DBusValue]) {
        switch event {
        case .started(let key): ("ContainerStarted", [.string(key.vm), .string(key.name)])
        case .stopped(let key, let reason): ("ContainerStopped", [.string(key.vm), .string(key.name), .string(reason)])
        case .applicationsChanged(let key, let count):
            ("ApplicationListChanged", [.string(key.vm), .string(key.name), .uint32(UInt32(clamping: count))])
        case .openURL(let key, let url): ("OpenUrlRequested", [.string(key.vm), .string(key.name), .string(url)])
        }
    }

    static func dictionary(_ listing: CiceroneManager.Listing) -> DBusValue {
        .options([
            "name": .string(listing.definition.name), "state": .string(listing.state),
            "image": .string(listing.definition.image), "changes_dir": .string(listing.definition.changesDirectory),
            "hostname": .string(listing.definition.hostname), "pid": .uint32(listing.pid),
            "garcon_port": .uint32(listing.garconPort),
        ])
    }

    static func dictionary(_ application: Vmtools_Container_Application) -> DBusValue {
        .options([
            "desktop_file_id": .string(application.desktopFileID),
            "name": .string(application.names[""] ?? application.names.values.sorted().first ?? ""),
            "names": application.names.dbusValue, "comment": .string(application.comments[""] ?? ""),
            "mime_types": .array(application.mimeTypes), "categories": .array(application.categories),
            "no_display": .bool(application.noDisplay), "terminal": .bool(application.terminal),
            "exec": .string(application.exec), "startup_wm_class": .string(application.startupWmClass),
        ])
    }
}

extension DBusSignalQueue<ContainerEvent> {
    /// cicerone's signals, one per ``ContainerEvent``, in order.
    public convenience init(cicerone connection: DBusConnection, failed: @escaping @Sendable (String) -> Void) {
        self.init(
            connection: connection, path: CiceroneInterface.path, interface: CiceroneInterface.name,
            signal: { CiceroneInterface.signal(for: $0) }, failed: failed)
    }
}
