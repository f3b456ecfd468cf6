import CSystemd
import EventLoop

#if canImport(Glibc)
    import Glibc
#endif

/// A connection to a D-Bus bus, served by one dedicated thread that alone touches the sd_bus.
///
/// Every method may be called from any thread or task; work is handed to the bus thread and
/// awaited. Closing (``close()``, or dropping the last reference) flushes queued messages,
/// answers calls whose handlers have not replied with an error, fails pending outgoing calls
/// with `org.freedesktop.DBus.Error.Disconnected`, ends signal streams and frees the bus.
///
/// ```swift
/// let bus = try await DBusConnection.open(.system)
/// var interface = DBusInterface("org.vmtools.Concierge")
/// interface.method("GetVmInfo", in: "s", out: "a{sv}") { call in ... }
/// _ = try await bus.export(interface, at: "/org/vmtools/Concierge")
/// try await bus.requestName("org.vmtools.Concierge")
/// ```
public final class DBusConnection: Sendable {
    let thread: BusThread
    /// The connection's unique name on the bus, for example `:1.42`.
    public let uniqueName: String

    private init(thread: BusThread, uniqueName: String) {
        self.thread = thread
        self.uniqueName = uniqueName
    }

    deinit { thread.requestClose() }

    // MARK: - Opening and closing

    /// Connects to `bus` and starts the connection's thread (named `dbus`).
    public static func open(_ bus: DBusBus) async throws(DBusError) -> DBusConnection {
        let thread = try BusThread()
        let result: Result<String, DBusError> = await withCheckedContinuation { continuation in
            do {
                try HostThread.detached(name: "dbus") {
                    thread.run(bus) { continuation.resume(returning: $0) }
                }
            } catch {
                continuation.resume(returning: .failure(.failed("starting the D-Bus thread: \(error)")))
            }
        }
        return DBusConnection(thread: thread, uniqueName: try result.get())
    }

    /// Flushes and closes the connection; returns once the bus is freed. Idempotent.
    public func close() async { await thread.close() }

    /// Whether the connection is closed (by ``close()`` or because the bus went away).
    public var isClosed: Bool { thread.isClosed }

    // MARK: - Names

    /// Requests the well-known `name` (for example `org.vmtools.Concierge`); throws if another
    /// connection owns it.
    public func requestName(_ name: String) async throws(DBusError) {
        try await thread.perform { bus throws(DBusError) in
            let r = sd_bus_request_name(bus, name, 0)
            if r == -EEXIST { throw .failed("the bus name \(name) is owned by another connection") }
            if r < 0 && r != -EALREADY { throw .system("requesting the bus name \(name)", r) }
        }
    }

    /// Gives up the well-known `name`.
    public func releaseName(_ name: String) async throws(DBusError) {
        try await thread.perform { bus throws(DBusError) in
            let r = sd_bus_release_name(bus, name)
            if r < 0 && r != -ESRCH && r != -EADDRINUSE { throw .system("releasing the bus name \(name)", r) }
        }
    }
}
