import GuestProtocol

/// A container as CreateContainer made it: which VM, and what its root is. Persisted, so a
/// container outlives cicerone, its VM's restarts, and its own.
public struct ContainerDefinition: Codable, Sendable, Equatable {
    public var vm: String
    public var name: String
    /// The folder in the guest its root is made from, read-only beneath an overlay ("/": the
    /// guest's own system).
    public var image: String
    /// Where in the guest its changes live (the overlay's upper layer): on the VM's disk when
    /// the guest runs from one, so they stay.
    public var changesDirectory: String
    public var hostname: String

    public init(vm: String, name: String, image: String, changesDirectory: String, hostname: String) {
        self.vm = vm
        self.name = name
        self.image = image
        self.changesDirectory = changesDirectory
        self.hostname = hostname
    }

    /// Where a container's changes go when CreateContainer does not say.
    public static func defaultChangesDirectory(of name: String) -> String { "/var/lib/vmtools/containers/\(name)" }
}

/// Identifies a container: its VM's name and its own.
public struct ContainerKey: Hashable, Sendable, Codable, CustomStringConvertible {
    public var vm: String
    public var name: String

    public init(vm: String, name: String) {
        self.vm = vm
        self.name = name
    }

    public var description: String { "container \(name) of VM \(vm)" }
}

/// What cicerone tells the world (its D-Bus signals).
public enum ContainerEvent: Sendable, Equatable {
    case started(ContainerKey)
    case stopped(ContainerKey, reason: String)
    case applicationsChanged(ContainerKey, count: Int)
    case openURL(ContainerKey, url: String)
}
