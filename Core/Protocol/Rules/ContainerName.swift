/// What a container may be called, as both ends of the API check it (maitred's StartContainer,
/// cicerone's CreateContainer): 1 to 63 of a-z, 0-9 and '-', not starting with '-'. A name is
/// also its hostname (a DNS label) and its cgroup folder's name.
public enum ContainerName {
    public static func isValid(_ name: String) -> Bool {
        guard (1...63).contains(name.utf8.count), !name.hasPrefix("-") else { return false }
        return name.utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D }
    }
}
