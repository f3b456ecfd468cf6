/// An `a{sv}` option dictionary, the project's way to pass optional and extensible arguments
/// (`StartVm sa{sv} demo 2 kernel s /path memory_mib u 512`), with typed, strict readers.
///
/// ```swift
/// let options = try DBusOptions(call.arguments[1])
/// let memory = try options.value("memory_mib", default: UInt32(1024))  // must be u
/// let kernel: String = try options.require("kernel")
/// ```
public struct DBusOptions: Sendable, Hashable {
    /// The options, variant contents unwrapped.
    public var values: [String: DBusValue]

    /// Options from `values` (variant contents, not variants).
    public init(_ values: [String: DBusValue] = [:]) {
        self.values = values
    }

    /// Reads an `a{sv}` value; anything else is InvalidArgs.
    public init(_ value: DBusValue) throws(DBusError) {
        guard case .dictionary("s", "v", let entries) = value else {
            throw .invalidArgs("options must be a{sv}, got \(value.signature)")
        }
        var values: [String: DBusValue] = [:]
        for entry in entries {
            guard case .string(let key) = entry.key, case .variant(let inner) = entry.value else {
                throw .invalidArgs("options must be a{sv}, got \(value.signature)")
            }
            values[key] = inner
        }
        self.values = values
    }

    /// The `a{sv}` value, entries sorted by key.
    public var dbusValue: DBusValue {
        .dictionary(
            key: "s", value: "v",
            values.sorted { $0.key < $1.key }.map { DBusDictEntry(key: .string($0.key), value: .variant($0.value)) })
    }

    /// Option `key` as `T`; nil when absent; InvalidArgs ("option memory_mib must be u, got s")
    /// when present with another type.
    public func optional<T: DBusConvertible>(_ key: String, as type: T.Type = T.self) throws(DBusError) -> T? {
        guard let value = values[key] else { return nil }
        do {
            return try T(dbusValue: value)
        } catch {
            throw .invalidArgs("option \(key) must be \(T.dbusSignature), got \(value.signature)")
        }
    }

    /// Option `key` as `T`; InvalidArgs when it is absent ("missing option kernel") or mistyped.
    public func require<T: DBusConvertible>(_ key: String, as type: T.Type = T.self) throws(DBusError) -> T {
        guard let value = try optional(key, as: type) else { throw .invalidArgs("missing option \(key)") }
        return value
    }

    /// Option `key` as `T`, or `defaultValue` when absent; InvalidArgs when mistyped.
    public func value<T: DBusConvertible>(_ key: String, default defaultValue: T) throws(DBusError) -> T {
        try optional(key, as: T.self) ?? defaultValue
    }

    /// Throws InvalidArgs naming the first option (in sorted order) not in `known`.
    public func rejectUnknown(_ known: Set<String>) throws(DBusError) {
        if let unknown = values.keys.sorted().first(where: { !known.contains($0) }) {
            throw .invalidArgs("unknown option \(unknown)")
        }
    }

    public subscript(key: String) -> DBusValue? {
        get { values[key] }
        set { values[key] = newValue }
    }
}
