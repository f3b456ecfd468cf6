#if canImport(Glibc)
    import Glibc
#endif

/// A D-Bus error: a dotted error name and a human message.
///
/// Handlers throw it to answer a call with that error (`org.vmtools.Error.<Kind>` by the
/// project's contract); clients receive it when a call fails. Any other error a handler throws
/// reaches the caller as ``failed``.
public struct DBusError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The error name, for example `org.vmtools.Error.NotFound`.
    public var name: String
    /// The human-readable message.
    public var message: String

    /// An error named `name` with `message`.
    public init(name: String, message: String) {
        self.name = name
        self.message = message
    }

    public var description: String { "\(name): \(message)" }
}

// MARK: - Well-known names

extension DBusError {
    /// `org.freedesktop.DBus.Error.Failed`: the generic failure.
    public static let failedName = "org.freedesktop.DBus.Error.Failed"
    /// `org.freedesktop.DBus.Error.InvalidArgs`: wrong signature or bad argument values.
    public static let invalidArgsName = "org.freedesktop.DBus.Error.InvalidArgs"
    /// `org.freedesktop.DBus.Error.Disconnected`: the connection closed before an answer came.
    public static let disconnectedName = "org.freedesktop.DBus.Error.Disconnected"
    /// `org.freedesktop.DBus.Error.NoReply`: no answer within the call's timeout.
    public static let noReplyName = "org.freedesktop.DBus.Error.NoReply"
    /// `org.freedesktop.DBus.Error.Timeout`: sd-bus's name for a call that timed out.
    public static let timeoutName = "org.freedesktop.DBus.Error.Timeout"

    /// `org.freedesktop.DBus.Error.Failed` with `message`.
    public static func failed(_ message: String) -> DBusError { DBusError(name: failedName, message: message) }

    /// `org.freedesktop.DBus.Error.InvalidArgs` with `message`.
    public static func invalidArgs(_ message: String) -> DBusError {
        DBusError(name: invalidArgsName, message: message)
    }

    /// `org.freedesktop.DBus.Error.Disconnected` with `message`.
    public static func disconnected(_ message: String) -> DBusError {
        DBusError(name: disconnectedName, message: message)
    }

    /// An error from `org.vmtools.Error.<kind>`, the project's own error names.
    public static func vmtools(_ kind: String, _ message: String) -> DBusError {
        DBusError(name: "org.vmtools.Error.\(kind)", message: message)
    }

    /// A failed sd-bus or system call: `operation` and the errno text (sd-bus returns `-errno`).
    static func system(_ operation: String, _ result: Int32) -> DBusError {
        let code = result < 0 ? -result : result
        return .failed("\(operation): \(String(cString: strerror(code)))")
    }
}
