#if canImport(Glibc)
    import Glibc
#endif

// MARK: - Asking systemd about our own unit

extension DBusConnection {
    /// The type of the job systemd is running on the unit that process `pid` belongs to
    /// ("restart", "stop", "start", ...), or nil when there is none or systemd cannot be asked.
    ///
    /// A service that gets SIGTERM cannot tell `systemctl restart` from `systemctl stop` by the
    /// signal; the job tells: during a restart's stop phase the unit's job is "restart".
    public func systemdJobType(ofUnitOf pid: pid_t = getpid()) async -> String? {
        let systemd = "org.freedesktop.systemd1"
        func property(_ path: String, _ interface: String, _ name: String) async throws(DBusError) -> DBusValue? {
            let reply = try await call(
                destination: systemd, path: path, interface: "org.freedesktop.DBus.Properties", member: "Get",
                [.string(interface), .string(name)], timeout: .seconds(5))
            guard case .variant(let value)? = reply.first else { return nil }
            return value
        }
        do {
            let unit = try await call(
                destination: systemd, path: "/org/freedesktop/systemd1", interface: "org.freedesktop.systemd1.Manager",
                member: "GetUnitByPID", [.uint32(UInt32(bitPattern: pid))], timeout: .seconds(5))
            guard case .objectPath(let unitPath)? = unit.first,
                case .structure(let job)? = try await property(unitPath, "org.freedesktop.systemd1.Unit", "Job"),
                job.count == 2, case .uint32(let id) = job[0], id != 0, case .objectPath(let jobPath) = job[1],
                case .string(let type)? = try await property(jobPath, "org.freedesktop.systemd1.Job", "JobType")
            else { return nil }
            return type
        } catch {
            return nil
        }
    }
}
