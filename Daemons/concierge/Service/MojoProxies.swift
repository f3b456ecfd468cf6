import DBus

/// Where concierge gets each VM's host-side mojo-proxy: the template unit
/// `vmtools-mojo-proxy@<vm>.service` through systemd in the daemon (its own sandbox, its own
/// journal, and it outlives a concierge restart as the VMs do); none in tests without systemd.
public protocol MojoProxies: Sendable {
    /// Starts the host's proxy of VM `vm`, which reads its channels from the VM's
    /// `mojo-proxy.env` (written first) and listens at `<vsock socket>_9900`.
    func start(vm: String) async throws(ConciergeError)
    /// Stops it; one already stopped is no error.
    func stop(vm: String) async
}

/// ``MojoProxies`` as systemd units (org.freedesktop.systemd1 on the system bus).
public struct SystemdMojoProxies: MojoProxies {
    let connection: DBusConnection

    public init(connection: DBusConnection) { self.connection = connection }

    public static func unit(of vm: String) -> String { "vmtools-mojo-proxy@\(vm).service" }

    public func start(vm: String) async throws(ConciergeError) {
        do {
            // Restart, not start: one left running by a VM of that name that went while no
            // concierge watched must not keep its old channels.
            _ = try await manager("RestartUnit", [.string(Self.unit(of: vm)), .string("replace")])
        } catch {
            throw .failed("starting \(Self.unit(of: vm)): \(error.message)")
        }
    }

    public func stop(vm: String) async {
        _ = try? await manager("StopUnit", [.string(Self.unit(of: vm)), .string("replace")])
    }

    private func manager(_ member: String, _ arguments: [DBusValue]) async throws(DBusError) -> [DBusValue] {
        try await connection.call(
            destination: "org.freedesktop.systemd1", path: "/org/freedesktop/systemd1",
            interface: "org.freedesktop.systemd1.Manager", member: member, arguments, timeout: .seconds(30))
    }
}
