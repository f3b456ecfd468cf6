import CSystemd

#if canImport(Glibc)
    import Glibc
#endif

// MARK: - Exporting objects

extension DBusConnection {
    /// Serves `interface` on the object at `path` (more interfaces may share a path). Returns a
    /// handle that removes it again.
    public func export(_ interface: DBusInterface, at path: String) async throws(DBusError) -> DBusExport {
        try interface.validate()
        let thread = self.thread
        let id = try await thread.perform { bus throws(DBusError) in
            let object = try ExportedObject(id: thread.makeID(), thread: thread, path: path, interface: interface)
            var slot: OpaquePointer? = nil
            let r = sd_bus_add_object_vtable(
                bus, &slot, path, interface.name, object.vtable, Unmanaged.passUnretained(object).toOpaque())
            if r < 0 { throw .system("exporting \(interface.name) at \(path)", r) }
            object.slot = slot
            thread.addObject(object)
            return object.id
        }
        return DBusExport(id: id, connection: self, path: path, interface: interface.name)
    }

    /// Emits signal `member` of `interface` from the object at `path` with `arguments`.
    /// Callable from any thread or task; returns once the signal is queued on the bus.
    public func emitSignal(path: String, interface: String, member: String, _ arguments: [DBusValue] = [])
        async throws(DBusError)
    {
        try await thread.perform { bus throws(DBusError) in
            var message: OpaquePointer? = nil
            var r = sd_bus_message_new_signal(bus, &message, path, interface, member)
            guard r >= 0, let message else { throw .system("creating signal \(interface).\(member)", r) }
            defer { sd_bus_message_unref(message) }
            try DBusValue.append(arguments, to: message)
            r = sd_bus_send(bus, message, nil)
            if r < 0 { throw .system("sending signal \(interface).\(member)", r) }
        }
    }

    /// Emits `org.freedesktop.DBus.Properties.PropertiesChanged` for `names` (properties
    /// exported with `emitsChange`), carrying their current values from the getters.
    public func emitPropertiesChanged(path: String, interface: String, _ names: [String]) async throws(DBusError) {
        try await thread.perform { bus throws(DBusError) in
            let r = ExportedObject.emitPropertiesChanged(bus, path: path, interface: interface, names)
            if r < 0 { throw .system("emitting PropertiesChanged for \(names.joined(separator: ", "))", r) }
        }
    }
}

/// One exported interface at one path; ``remove()`` takes it off the bus.
public final class DBusExport: Sendable {
    private let id: UInt64
    private let connection: DBusConnection
    /// The object path.
    public let path: String
    /// The interface name.
    public let interface: String

    init(id: UInt64, connection: DBusConnection, path: String, interface: String) {
        self.id = id
        self.connection = connection
        self.path = path
        self.interface = interface
    }

    /// Emits the interface's signal `member` with `arguments`.
    public func emitSignal(_ member: String, _ arguments: [DBusValue] = []) async throws(DBusError) {
        try await connection.emitSignal(path: path, interface: interface, member: member, arguments)
    }

    /// Emits PropertiesChanged for the interface's properties `names`.
    public func emitPropertiesChanged(_ names: [String]) async throws(DBusError) {
        try await connection.emitPropertiesChanged(path: path, interface: interface, names)
    }

    /// Stops serving the interface; calls already running still answer.
    public func remove() async {
        let (id, thread) = (self.id, connection.thread)
        _ = try? await thread.perform { _ in thread.removeObject(id) }
    }
}

// MARK: - The vtable and its callbacks

/// An exported interface on the bus thread: the sd_bus_vtable built from a ``DBusInterface``
/// (with the C strings it points to) and the slot that keeps it on the bus.
final class ExportedObject: @unchecked Sendable {
    let id: UInt64
    unowned let thread: BusThread
    let path: String
    let interface: DBusInterface
    var slot: OpaquePointer?
    private(set) var vtable: UnsafeMutablePointer<sd_bus_vtable>
    private var allocations: [UnsafeMutableRawPointer] = []
    private let methods: [String: DBusInterface.Method]
    private let properties: [String: DBusInterface.Property]

    init(id: UInt64, thread: BusThread, path: String, interface: DBusInterface) throws(DBusError) {
        self.id = id
        self.thread = thread
        self.path = path
        self.interface = interface
        self.methods = Dictionary(interface.methods.map { ($0.name, $0) }, uniquingKeysWith: { $1 })
        self.properties = Dictionary(interface.properties.map { ($0.name, $0) }, uniquingKeysWith: { $1 })
        let count = 2 + interface.methods.count + interface.properties.count + interface.signals.count
        vtable = .allocate(capacity: count)

        var entries: [sd_bus_vtable] = [csystemd_vtable_start(0)]
        let unprivileged = UInt64(SD_BUS_VTABLE_UNPRIVILEGED)
        for method in interface.methods {
            entries.append(
                csystemd_vtable_method(
                    try keep(method.name), try keep(method.input), try keep(method.output), try keepNames(method.names),
                    methodTrampoline, unprivileged))
        }
        for property in interface.properties {
            var flags = property.emitsChange ? UInt64(SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE) : 0
            if property.set != nil { flags |= unprivileged }
            entries.append(
                csystemd_vtable_property(
                    try keep(property.name), try keep(property.type), propertyGetTrampoline,
                    property.set == nil ? nil : propertySetTrampoline, flags))
        }
        for signal in interface.signals {
            entries.append(
                csystemd_vtable_signal(
                    try keep(signal.name), try keep(signal.signature), try keepNames(signal.names), 0))
        }
        entries.append(csystemd_vtable_end())
        vtable.initialize(from: entries, count: entries.count)
    }

    deinit {
        vtable.deallocate()
        for allocation in allocations { free(allocation) }
    }

    /// A C copy of `text` living as long as the object.
    private func keep(_ text: String) throws(DBusError) -> UnsafePointer<CChar> {
        guard let copy = strdup(text) else { throw .failed("out of memory") }
        allocations.append(UnsafeMutableRawPointer(copy))
        return UnsafePointer(copy)
    }

    /// Argument names in sd-bus's form: each followed by a NUL (then the string's own NUL).
    private func keepNames(_ names: [String]) throws(DBusError) -> UnsafePointer<CChar> {
        var bytes: [UInt8] = []
        for name in names { bytes += Array(name.utf8) + [0] }
        bytes.append(0)
        guard let memory = malloc(bytes.count) else { throw .failed("out of memory") }
        memory.copyMemory(from: bytes, byteCount: bytes.count)
        allocations.append(memory)
        return UnsafePointer(memory.assumingMemoryBound(to: CChar.self))
    }

    // MARK: - Dispatch (bus thread)

    /// Starts the handler of a method call as a task; the reply goes out when it finishes.
    fileprivate func dispatch(_ message: OpaquePointer, _ busError: UnsafeMutablePointer<sd_bus_error>?) -> Int32 {
        let member = sd_bus_message_get_member(message).map { String(cString: $0) } ?? ""
        guard let method = methods[member] else {
            return sd_bus_error_set(busError, "org.freedesktop.DBus.Error.UnknownMethod", "no method \(member)")
        }
        let arguments: [DBusValue]
        do {
            arguments = try DBusValue.readAll(from: message)
        } catch {
            return sd_bus_error_set(busError, error.name, error.message)
        }
        let call = DBusMethodCall(
            path: path, interface: interface.name, member: member, arguments: arguments,
            sender: Self.sender(of: message))

        sd_bus_message_ref(message)
        let id = thread.addIncoming(IncomingCall(message: message, member: member, task: nil))
        let (thread, handler, output) = (self.thread, method.handler, method.output)
        let task = Task {
            let outcome: Result<[DBusValue], DBusError>
            do {
                outcome = .success(try await handler(call))
            } catch let error as DBusError {
                outcome = .failure(error)
            } catch {
                outcome = .failure(.failed(String(describing: error)))
            }
            thread.submit { _ in thread.finishIncoming(id, outcome, expected: output) }
        }
        thread.setIncomingTask(id, task)
        return 1
    }

    /// The caller's unique name, euid and pid (the bus driver is asked when the message does
    /// not carry them, as with dbus-daemon).
    static func sender(of message: OpaquePointer) -> DBusSender {
        let uniqueName = sd_bus_message_get_sender(message).map { String(cString: $0) } ?? ""
        var uid: UInt32? = nil
        var pid: Int32? = nil
        var creds: OpaquePointer? = nil
        let mask = UInt64(SD_BUS_CREDS_EUID) | UInt64(SD_BUS_CREDS_PID)
        if sd_bus_query_sender_creds(message, mask, &creds) >= 0, let creds {
            var value = uid_t()
            if sd_bus_creds_get_euid(creds, &value) >= 0 || sd_bus_creds_get_uid(creds, &value) >= 0 { uid = value }
            var process = pid_t()
            if sd_bus_creds_get_pid(creds, &process) >= 0 { pid = process }
            sd_bus_creds_unref(creds)
        }
        return DBusSender(uniqueName: uniqueName, uid: uid, pid: pid)
    }

    fileprivate func get(_ name: String, into reply: OpaquePointer, _ busError: UnsafeMutablePointer<sd_bus_error>?)
        -> Int32
    {
        guard let property = properties[name] else {
            return sd_bus_error_set(busError, "org.freedesktop.DBus.Error.UnknownProperty", "no property \(name)")
        }
        do {
            let value = try property.get()
            guard value.signature == property.type else {
                throw DBusError.failed("property \(name) is \(property.type), its getter gave \(value.signature)")
            }
            try value.append(to: reply)
            return 1
        } catch let failure as DBusError {
            return sd_bus_error_set(busError, failure.name, failure.message)
        } catch {
            return sd_bus_error_set(busError, DBusError.failedName, String(describing: error))
        }
    }

    fileprivate func set(
        _ bus: OpaquePointer, _ name: String, from message: OpaquePointer,
        _ busError: UnsafeMutablePointer<sd_bus_error>?
    ) -> Int32 {
        guard let property = properties[name], let setter = property.set else {
            return sd_bus_error_set(
                busError, "org.freedesktop.DBus.Error.PropertyReadOnly", "property \(name) is read-only")
        }
        do {
            guard let value = try DBusValue.read(from: message) else {
                throw DBusError.invalidArgs("no value for property \(name)")
            }
            try setter(value)
        } catch let failure as DBusError {
            return sd_bus_error_set(busError, failure.name, failure.message)
        } catch {
            return sd_bus_error_set(busError, DBusError.failedName, String(describing: error))
        }
        if property.emitsChange { _ = Self.emitPropertiesChanged(bus, path: path, interface: interface.name, [name]) }
        return 1
    }

    static func emitPropertiesChanged(_ bus: OpaquePointer, path: String, interface: String, _ names: [String]) -> Int32
    {
        var strings: [UnsafeMutablePointer<CChar>?] = names.map { strdup($0) }
        defer { for string in strings { free(string) } }
        guard !strings.contains(where: { $0 == nil }) else { return -ENOMEM }
        strings.append(nil)
        return strings.withUnsafeMutableBufferPointer { buffer in
            sd_bus_emit_properties_changed_strv(bus, path, interface, buffer.baseAddress)
        }
    }
}

private func methodTrampoline(
    _ message: OpaquePointer?, _ userdata: UnsafeMutableRawPointer?, _ error: UnsafeMutablePointer<sd_bus_error>?
) -> Int32 {
    guard let message, let userdata else { return -EINVAL }
    return Unmanaged<ExportedObject>.fromOpaque(userdata).takeUnretainedValue().dispatch(message, error)
}

private func propertyGetTrampoline(
    _ bus: OpaquePointer?, _ path: UnsafePointer<CChar>?, _ interface: UnsafePointer<CChar>?,
    _ property: UnsafePointer<CChar>?, _ reply: OpaquePointer?, _ userdata: UnsafeMutableRawPointer?,
    _ error: UnsafeMutablePointer<sd_bus_error>?
) -> Int32 {
    guard let property, let reply, let userdata else { return -EINVAL }
    return Unmanaged<ExportedObject>.fromOpaque(userdata).takeUnretainedValue()
        .get(String(cString: property), into: reply, error)
}

private func propertySetTrampoline(
    _ bus: OpaquePointer?, _ path: UnsafePointer<CChar>?, _ interface: UnsafePointer<CChar>?,
    _ property: UnsafePointer<CChar>?, _ value: OpaquePointer?, _ userdata: UnsafeMutableRawPointer?,
    _ error: UnsafeMutablePointer<sd_bus_error>?
) -> Int32 {
    guard let bus, let property, let value, let userdata else { return -EINVAL }
    return Unmanaged<ExportedObject>.fromOpaque(userdata).takeUnretainedValue()
        .set(bus, String(cString: property), from: value, error)
}
