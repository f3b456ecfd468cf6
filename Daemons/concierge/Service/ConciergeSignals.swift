import DBus
import Synchronization

/// Turns VM events into the interface's D-Bus signals, emitted in the order they happened, and
/// keeps the `RunningVms` property's value (a snapshot the bus thread can read without waiting
/// for the VM manager), announcing each change with PropertiesChanged.
public final class ConciergeSignals: Sendable {
    private let queue: DBusSignalQueue<VMEvent>
    private let running: RunningSet

    /// - Parameters:
    ///   - running: the VMs already running (re-adopted ones).
    ///   - failed: told when a signal could not be emitted.
    public init(
        connection: DBusConnection, running: [String] = [], failed: @escaping @Sendable (String) -> Void
    ) {
        let names = RunningSet(running)
        self.running = names
        queue = DBusSignalQueue(
            connection: connection, path: ConciergeInterface.path, interface: ConciergeInterface.name,
            signal: { ConciergeInterface.signal(for: $0) },
            after: { event in
                let changed: Bool
                switch event {
                case .started(let info): changed = names.set.withLock { $0.insert(info.name).inserted }
                case .stopped(let name, _): changed = names.set.withLock { $0.remove(name) != nil }
                case .starting, .stopping: changed = false
                }
                guard changed else { return }
                do {
                    try await connection.emitPropertiesChanged(
                        path: ConciergeInterface.path, interface: ConciergeInterface.name, ["RunningVms"])
                } catch {
                    failed("emitting PropertiesChanged for RunningVms: \(error)")
                }
            }, failed: failed)
    }

    public func emit(_ event: VMEvent) { queue.emit(event) }

    /// The names of the running VMs, sorted.
    public var runningVMs: [String] { running.set.withLock { $0.sorted() } }

    /// Adds VMs that run without having been started by this concierge (re-adopted ones).
    public func adopt(_ names: [String]) { running.set.withLock { $0.formUnion(names) } }
}

/// The running VMs' names, shared by the signal task and the property getter.
private final class RunningSet: Sendable {
    let set: Mutex<Set<String>>
    init(_ names: [String]) { set = Mutex(Set(names)) }
}
