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

    /// Container names: 1 to 63 of a-z, 0-9 and '-', not starting with '-' (maitred's rule: a
    /// hostname label and a cgroup folder).
    public static func isValidName(_ name: String) -> Bool {
        guard (1...63).contains(name.utf8.count), !name.hasPrefix("-") else { return false }
        return name.utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D }
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
