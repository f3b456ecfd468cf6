#if canImport(Glibc)
    import Glibc
#endif

/// Who may call a vmtools daemon: root, and members of the `vmtools` group when that group
/// exists. The bus policy (dbus/) says the same; this holds even on a bus without that policy.
public struct CallerPolicy: Sendable {
    public var group: String
    /// What callers do, for the refusal: "manage VMs", "share folders".
    public var purpose: String

    public init(group: String = "vmtools", purpose: String = "manage VMs") {
        self.group = group
        self.purpose = purpose
    }

    public func authorize(_ sender: DBusSender) throws(DBusError) {
        guard let uid = sender.uid else {
            throw .vmtools("AccessDenied", "the bus did not say who \(sender.uniqueName) is")
        }
        guard uid == 0 || isMember(uid) else {
            throw .vmtools(
                "AccessDenied", "uid \(uid) may not \(purpose): only root and members of group \(group) may")
        }
    }

    /// Whether `uid`'s primary or supplementary groups include ``group``.
    public func isMember(_ uid: UInt32) -> Bool {
        guard let entry = getgrnam(group) else { return false }
        let gid = entry.pointee.gr_gid
        guard let user = getpwuid(uid) else { return false }
        if user.pointee.pw_gid == gid { return true }
        var count: Int32 = 64
        var groups = [gid_t](repeating: 0, count: Int(count))
        guard getgrouplist(user.pointee.pw_name, user.pointee.pw_gid, &groups, &count) >= 0 else { return false }
        return groups.prefix(Int(count)).contains(gid)
    }
}
