import CSystemd

/// The service manager's readiness protocol (sd_notify): tells systemd a `Type=notify`
/// unit is ready, what it is doing, that it is stopping, and that it is alive. Every call is
/// a no-op when `NOTIFY_SOCKET` is unset (not started by systemd).
public enum SystemdNotify {
    /// `READY=1`: start-up is complete (the bus name is taken, objects are exported).
    @discardableResult
    public static func ready(status: String? = nil) -> Bool {
        send(["READY=1"] + (status.map { ["STATUS=\($0)"] } ?? []))
    }

    /// `STATUS=<text>`: a one-line status `systemctl status` shows.
    @discardableResult
    public static func status(_ text: String) -> Bool { send(["STATUS=\(text)"]) }

    /// `STOPPING=1`: shutdown has begun.
    @discardableResult
    public static func stopping() -> Bool { send(["STOPPING=1"]) }

    /// `WATCHDOG=1`: the service is alive (for `WatchdogSec=`).
    @discardableResult
    public static func watchdog() -> Bool { send(["WATCHDOG=1"]) }

    /// Sends `assignments` (`KEY=value` lines); true when systemd received them, false when
    /// there is no notify socket or sending failed.
    @discardableResult
    public static func send(_ assignments: [String]) -> Bool {
        sd_notify(0, assignments.joined(separator: "\n")) > 0
    }
}
