import Foundation

#if canImport(Glibc)
    import Glibc
#endif

// MARK: - Who may use a VM's files

extension VMPaths {
    /// Lets members of group `gid` into the folder, connect to the shell and agent sockets
    /// (what `vmtoolsctl shell NAME` and `exec NAME` use) and read the logs. The vsock socket
    /// (every guest port) and the control socket stay root's. Returns what could not be
    /// changed, if anything, for the log: access is a convenience, never a reason to fail a VM.
    ///
    /// concierge changes the group as the files' owner and a member of the group
    /// (SupplementaryGroups= in its unit), which needs no CAP_CHOWN.
    func share(withGroup gid: gid_t) -> [String] {
        let grants: [(path: String, mode: mode_t)] = [
            (folder, 0o750), (shell, 0o660), (maitred, 0o660), (serialLog, 0o640), (vmmLog, 0o640),
        ]
        var failures: [String] = []
        for grant in grants where access(grant.path, F_OK) == 0 {
            if chown(grant.path, uid_t.max, gid) != 0 || chmod(grant.path, grant.mode) != 0 {
                failures.append("\(grant.path): \(String(cString: strerror(errno)))")
            }
        }
        return failures
    }

    /// The id of group `name`, or nil when there is no such group.
    static func groupID(_ name: String) -> gid_t? {
        guard let entry = getgrnam(name) else { return nil }
        return entry.pointee.gr_gid
    }
}
