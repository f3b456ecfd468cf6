import DBus

/// Tells cicerone (org.vmtools.Cicerone) of VMs as they start and stop, in the order they did,
/// as ChromeOS's concierge calls NotifyVmStarted/NotifyVmStopped: cicerone then listens for the
/// VM's containers. A cicerone that is not installed, or fails, costs the VM nothing: it is
/// logged. (cicerone also asks concierge about a VM it was not told of.)
public final class CiceroneNotifier: Sendable {
    public static let service = "org.vmtools.Cicerone"
    private let queue: SerialEventQueue<VMEvent>

    public init(connection: DBusConnection, log: @escaping @Sendable (String) -> Void) {
        queue = SerialEventQueue { event in
            let call: (member: String, name: String, arguments: [DBusValue])
            switch event {
            case .started(let info):
                call = ("NotifyVmStarted", info.name, [.string(info.name), ConciergeInterface.dictionary(info)])
            case .stopped(let name, _): call = ("NotifyVmStopped", name, [.string(name)])
            case .starting, .stopping: return
            }
            do throws(DBusError) {
                _ = try await connection.call(service: Self.service, member: call.member, call.arguments)
            } catch {
                log("cicerone was not told of VM \(call.name) (\(call.member)): \(error.message)")
            }
        }
    }

    public func notify(_ event: VMEvent) { queue.enqueue(event) }
}
