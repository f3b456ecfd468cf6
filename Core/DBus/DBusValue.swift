/// One D-Bus value of any type, as it travels in a message.
///
/// Containers carry their element signatures so that empty arrays and dictionaries keep their
/// type. ``signature`` computes the value's D-Bus signature. Swift types convert to and from
/// values through ``DBusConvertible`` (`UInt32(dbusValue:)`, `"x".dbusValue`), and `a{sv}`
/// option dictionaries read through ``DBusOptions``.
public enum DBusValue: Sendable, Hashable {
    /// `y`
    case byte(UInt8)
    /// `b`
    case bool(Bool)
    /// `n`
    case int16(Int16)
    /// `q`
    case uint16(UInt16)
    /// `i`
    case int32(Int32)
    /// `u`
    case uint32(UInt32)
    /// `x`
    case int64(Int64)
    /// `t`
    case uint64(UInt64)
    /// `d`
    case double(Double)
    /// `s` (UTF-8, no NUL bytes)
    case string(String)
    /// `o`, for example `/org/vmtools/Concierge`
    case objectPath(String)
    /// `g`, a type signature such as `a{sv}`
    case signature(String)
    /// `h`: a file descriptor the value owns (received ones are duplicates of the message's).
    case fd(DBusFileDescriptor)
    /// `a<element>`: every item has signature `element`.
    case array(element: String, [DBusValue])
    /// `a{<key><value>}`: entries in message order; keys are basic types.
    case dictionary(key: String, value: String, [DBusDictEntry])
    /// `v`: a value carrying its own signature.
    indirect case variant(DBusValue)
    /// `(...)`: a struct of one or more fields.
    case structure([DBusValue])
}

/// One key/value pair of a ``DBusValue/dictionary(key:value:_:)``.
public struct DBusDictEntry: Sendable, Hashable {
    public var key: DBusValue
    public var value: DBusValue

    public init(key: DBusValue, value: DBusValue) {
        self.key = key
        self.value = value
    }
}

// MARK: - Signatures

extension DBusValue {
    /// The value's complete D-Bus signature, for example `a{sv}` or `(su)`.
    public var signature: String {
        switch self {
        case .byte: return "y"
        case .bool: return "b"
        case .int16: return "n"
        case .uint16: return "q"
        case .int32: return "i"
        case .uint32: return "u"
        case .int64: return "x"
        case .uint64: return "t"
        case .double: return "d"
        case .string: return "s"
        case .objectPath: return "o"
        case .signature: return "g"
        case .fd: return "h"
        case .array(let element, _): return "a" + element
        case .dictionary(let key, let value, _): return "a{" + key + value + "}"
        case .variant: return "v"
        case .structure(let fields): return "(" + fields.map(\.signature).joined() + ")"
        }
    }

    /// The concatenated signatures of `values`: a message body's signature.
    public static func signature(of values: [DBusValue]) -> String { values.map(\.signature).joined() }

    /// The variant's content, or the value itself when it is not a variant.
    public var unwrappingVariant: DBusValue {
        if case .variant(let inner) = self { return inner.unwrappingVariant }
        return self
    }
}

// MARK: - Building values

extension DBusValue {
    /// An array of `values`, all converted from the same Swift type.
    public static func array<T: DBusConvertible>(_ values: [T]) -> DBusValue {
        .array(element: T.dbusSignature, values.map(\.dbusValue))
    }

    /// An `a{sv}` option dictionary, entries sorted by key.
    public static func options(_ values: [String: DBusValue]) -> DBusValue {
        DBusOptions(values).dbusValue
    }
}

// MARK: - Description

extension DBusValue: CustomStringConvertible {
    public var description: String {
        switch self {
        case .byte(let v): return "y \(v)"
        case .bool(let v): return "b \(v)"
        case .int16(let v): return "n \(v)"
        case .uint16(let v): return "q \(v)"
        case .int32(let v): return "i \(v)"
        case .uint32(let v): return "u \(v)"
        case .int64(let v): return "x \(v)"
        case .uint64(let v): return "t \(v)"
        case .double(let v): return "d \(v)"
        case .string(let v): return "s \"\(v)\""
        case .objectPath(let v): return "o \(v)"
        case .signature(let v): return "g \(v)"
        case .fd(let v): return "h \(v.fd)"
        case .array(let e, let items): return "a\(e) [\(items.map(\.description).joined(separator: ", "))]"
        case .dictionary(let k, let v, let entries):
            return "a{\(k)\(v)} {\(entries.map { "\($0.key): \($0.value)" }.joined(separator: ", "))}"
        case .variant(let inner): return "v <\(inner)>"
        case .structure(let fields): return "(\(fields.map(\.description).joined(separator: ", ")))"
        }
    }
}
