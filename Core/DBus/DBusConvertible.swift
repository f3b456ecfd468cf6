/// A Swift type with a fixed D-Bus signature that converts to and from ``DBusValue``.
///
/// The integer types map one to one (`UInt32` is `u`, `Int64` is `x`, ...), `String` is `s`,
/// ``DBusObjectPath`` is `o`, ``DBusValue`` itself is `v`, arrays are `a<T>` and dictionaries
/// `a{KV}`, so `[String: DBusValue]` is `a{sv}`. Conversion is strict: a `u` never reads as
/// an `Int32`.
public protocol DBusConvertible: Sendable {
    /// The type's D-Bus signature.
    static var dbusSignature: String { get }
    /// The value to put in a message.
    var dbusValue: DBusValue { get }
    /// Reads the type from `dbusValue`; throws InvalidArgs ("expected u, got s") on a mismatch.
    init(dbusValue: DBusValue) throws(DBusError)
}

extension DBusConvertible {
    static func mismatch(_ value: DBusValue) -> DBusError {
        .invalidArgs("expected \(dbusSignature), got \(value.signature)")
    }
}

// MARK: - Basic types

extension UInt8: DBusConvertible {
    public static var dbusSignature: String { "y" }
    public var dbusValue: DBusValue { .byte(self) }
    public init(dbusValue: DBusValue) throws(DBusError) {
        guard case .byte(let v) = dbusValue else { throw Self.mismatch(dbusValue) }
        self = v
    }
}

extension Bool: DBusConvertible {
    public static var dbusSignature: String { "b" }
    public var dbusValue: DBusValue { .bool(self) }
    public init(dbusValue: DBusValue) throws(DBusError) {
        guard case .bool(let v) = dbusValue else { throw Self.mismatch(dbusValue) }
        self = v
    }
}

extension Int16: DBusConvertible {
    public static var dbusSignature: String { "n" }
    public var dbusValue: DBusValue { .int16(self) }
    public init(dbusValue: DBusValue) throws(DBusError) {
        guard case .int16(let v) = dbusValue else { throw Self.mismatch(dbusValue) }
        self = v
    }
}

extension UInt16: DBusConvertible {
    public static var dbusSignature: String { "q" }
    public var dbusValue: DBusValue { .uint16(self) }
    public init(dbusValue: DBusValue) throws(DBusError) {
        guard case .uint16(let v) = dbusValue else { throw Self.mismatch(dbusValue) }
        self = v
    }
}

extension Int32: DBusConvertible {
    public static var dbusSignature: String { "i" }
    public var dbusValue: DBusValue { .int32(self) }
    public init(dbusValue: DBusValue) throws(DBusError) {
        guard case .int32(let v) = dbusValue else { throw Self.mismatch(dbusValue) }
        self = v
    }
}

extension UInt32: DBusConvertible {
    public static var dbusSignature: String { "u" }
    public var dbusValue: DBusValue { .uint32(self) }
    public init(dbusValue: DBusValue) throws(DBusError) {
        guard case .uint32(let v) = dbusValue else { throw Self.mismatch(dbusValue) }
        self = v
    }
}

extension Int64: DBusConvertible {
    public static var dbusSignature: String { "x" }
    public var dbusValue: DBusValue { .int64(self) }
    public init(dbusValue: DBusValue) throws(DBusError) {
        guard case .int64(let v) = dbusValue else { throw Self.mismatch(dbusValue) }
        self = v
    }
}

extension UInt64: DBusConvertible {
    public static var dbusSignature: String { "t" }
    public var dbusValue: DBusValue { .uint64(self) }
    public init(dbusValue: DBusValue) throws(DBusError) {
        guard case .uint64(let v) = dbusValue else { throw Self.mismatch(dbusValue) }
        self = v
    }
}

extension Double: DBusConvertible {
    public static var dbusSignature: String { "d" }
    public var dbusValue: DBusValue { .double(self) }
    public init(dbusValue: DBusValue) throws(DBusError) {
        guard case .double(let v) = dbusValue else { throw Self.mismatch(dbusValue) }
        self = v
    }
}

extension String: DBusConvertible {
    public static var dbusSignature: String { "s" }
    public var dbusValue: DBusValue { .string(self) }
    public init(dbusValue: DBusValue) throws(DBusError) {
        guard case .string(let v) = dbusValue else { throw Self.mismatch(dbusValue) }
        self = v
    }
}

/// An object path (`o`), such as `/org/vmtools/Concierge`.
public struct DBusObjectPath: DBusConvertible, Hashable, RawRepresentable, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(_ path: String) { self.rawValue = path }
    public static var dbusSignature: String { "o" }
    public var dbusValue: DBusValue { .objectPath(rawValue) }
    public init(dbusValue: DBusValue) throws(DBusError) {
        guard case .objectPath(let v) = dbusValue else { throw Self.mismatch(dbusValue) }
        self.rawValue = v
    }
    public var description: String { rawValue }
}

extension DBusFileDescriptor: DBusConvertible {
    public static var dbusSignature: String { "h" }
    public var dbusValue: DBusValue { .fd(self) }
    public convenience init(dbusValue: DBusValue) throws(DBusError) {
        guard case .fd(let v) = dbusValue else { throw Self.mismatch(dbusValue) }
        try self.init(duplicating: v.fd)
    }
}

/// ``DBusValue`` is the variant type: it converts to `v`, and reads a variant's content.
extension DBusValue: DBusConvertible {
    public static var dbusSignature: String { "v" }
    public var dbusValue: DBusValue { .variant(self) }
    public init(dbusValue: DBusValue) throws(DBusError) {
        guard case .variant(let inner) = dbusValue else { throw Self.mismatch(dbusValue) }
        self = inner
    }
}

// MARK: - Containers

extension Array: DBusConvertible where Element: DBusConvertible {
    public static var dbusSignature: String { "a" + Element.dbusSignature }
    public var dbusValue: DBusValue { .array(element: Element.dbusSignature, map(\.dbusValue)) }
    public init(dbusValue: DBusValue) throws(DBusError) {
        guard case .array(let element, let items) = dbusValue, element == Element.dbusSignature else {
            throw Self.mismatch(dbusValue)
        }
        var result: [Element] = []
        result.reserveCapacity(items.count)
        for item in items { result.append(try Element(dbusValue: item)) }
        self = result
    }
}

extension Dictionary: DBusConvertible where Key: DBusConvertible, Value: DBusConvertible {
    public static var dbusSignature: String { "a{" + Key.dbusSignature + Value.dbusSignature + "}" }
    public var dbusValue: DBusValue {
        .dictionary(
            key: Key.dbusSignature, value: Value.dbusSignature,
            map { DBusDictEntry(key: $0.key.dbusValue, value: $0.value.dbusValue) })
    }
    public init(dbusValue: DBusValue) throws(DBusError) {
        guard case .dictionary(let k, let v, let entries) = dbusValue,
            k == Key.dbusSignature, v == Value.dbusSignature
        else { throw Self.mismatch(dbusValue) }
        var result: [Key: Value] = [:]
        for entry in entries { result[try Key(dbusValue: entry.key)] = try Value(dbusValue: entry.value) }
        self = result
    }
}
