/// A method handler: receives the decoded call and returns the reply's values (matching the
/// method's `out` signature), or throws. A thrown ``DBusError`` becomes that error reply; any
/// other error becomes `org.freedesktop.DBus.Error.Failed` with the error's description.
/// Handlers run as tasks, so a slow one never blocks the bus or other calls.
public typealias DBusMethodHandler = @Sendable (DBusMethodCall) async throws -> [DBusValue]

/// A property getter; runs on the bus thread, so it must be quick and must not block.
public typealias DBusPropertyGetter = @Sendable () throws -> DBusValue

/// A property setter, given a value of the property's type; runs on the bus thread.
public typealias DBusPropertySetter = @Sendable (DBusValue) throws -> Void

/// A D-Bus interface to export: its methods, properties and signals, described for sd-bus's
/// vtable (so the bus's introspection, `Properties.Get/Set/GetAll` and signature checks
/// come from sd-bus). Build it, then hand it to ``DBusConnection/export(_:at:)``.
///
/// Members are callable by any peer the bus policy admits (sd-bus's capability check is
/// off); handlers decide further from ``DBusMethodCall/sender``.
public struct DBusInterface: Sendable {
    struct Method: Sendable {
        var name: String
        var input: String
        var output: String
        var names: [String]
        var handler: DBusMethodHandler
    }

    struct Property: Sendable {
        var name: String
        var type: String
        var get: DBusPropertyGetter
        var set: DBusPropertySetter?
        var emitsChange: Bool
    }

    struct Signal: Sendable {
        var name: String
        var signature: String
        var names: [String]
    }

    /// The interface name, for example `org.vmtools.Concierge`.
    public let name: String
    var methods: [Method] = []
    var properties: [Property] = []
    var signals: [Signal] = []

    /// An empty interface called `name`.
    public init(_ name: String) {
        self.name = name
    }

    // MARK: - Members

    /// Adds method `name` taking arguments of signature `input` and replying `output`.
    /// `inputNames`/`outputNames` name the arguments in introspection (all or none).
    /// Calls with another signature are answered with InvalidArgs before the handler runs.
    public mutating func method(
        _ name: String, in input: String = "", out output: String = "", inputNames: [String] = [],
        outputNames: [String] = [], handler: @escaping DBusMethodHandler
    ) {
        methods.append(
            Method(name: name, input: input, output: output, names: inputNames + outputNames, handler: handler))
    }

    /// Adds a property of signature `type`, read-write when `set` is given. With
    /// `emitsChange`, `PropertiesChanged` carries its new value (sent after every successful
    /// set, and by ``DBusConnection/emitPropertiesChanged(path:interface:_:)``).
    public mutating func property(
        _ name: String, type: String, emitsChange: Bool = true, get: @escaping DBusPropertyGetter,
        set: DBusPropertySetter? = nil
    ) {
        properties.append(Property(name: name, type: type, get: get, set: set, emitsChange: emitsChange))
    }

    /// Adds a typed property: `get` returns a `T`, `set` receives one.
    public mutating func property<T: DBusConvertible>(
        _ name: String, of type: T.Type = T.self, emitsChange: Bool = true, get: @escaping @Sendable () throws -> T,
        set: (@Sendable (T) throws -> Void)? = nil
    ) {
        var setter: DBusPropertySetter? = nil
        if let set { setter = { value in try set(try T(dbusValue: value)) } }
        property(name, type: T.dbusSignature, emitsChange: emitsChange, get: { try get().dbusValue }, set: setter)
    }

    /// Declares signal `name` with arguments of `signature` (named `names` in introspection).
    public mutating func signal(_ name: String, signature: String = "", names: [String] = []) {
        signals.append(Signal(name: name, signature: signature, names: names))
    }

    // MARK: - Checks

    /// Throws InvalidArgs for a bad signature or a name list that does not fit its signature.
    func validate() throws(DBusError) {
        func check(_ what: String, _ signature: String, _ names: [String]) throws(DBusError) {
            guard let types = DBusSignature.completeTypes(signature) else {
                throw .invalidArgs("\(name).\(what): invalid signature '\(signature)'")
            }
            if !names.isEmpty && names.count != types.count {
                throw .invalidArgs("\(name).\(what): \(names.count) argument names for signature '\(signature)'")
            }
        }
        for method in methods {
            try check(method.name, method.input + method.output, method.names)
        }
        for property in properties {
            guard DBusSignature.completeTypes(property.type)?.count == 1 else {
                throw .invalidArgs(
                    "\(name).\(property.name): a property needs one complete type, got '\(property.type)'")
            }
        }
        for signal in signals { try check(signal.name, signal.signature, signal.names) }
    }
}

/// Signature parsing, for checks before sd-bus sees a signature.
enum DBusSignature {
    /// The complete types of `signature` (`"sa{sv}u"` → `["s", "a{sv}", "u"]`); nil if invalid.
    static func completeTypes(_ signature: String) -> [String]? {
        let bytes = Array(signature.utf8)
        var index = 0
        let basic = Set("ybnqiuxtdsogh".utf8)

        func one(depth: Int) -> Bool {
            guard index < bytes.count, depth < 64 else { return false }
            let c = bytes[index]
            index += 1
            if basic.contains(c) || c == UInt8(ascii: "v") { return true }
            if c == UInt8(ascii: "a") {
                if index < bytes.count, bytes[index] == UInt8(ascii: "{") {
                    index += 1
                    guard index < bytes.count, basic.contains(bytes[index]) else { return false }
                    index += 1
                    guard one(depth: depth + 1), index < bytes.count, bytes[index] == UInt8(ascii: "}") else {
                        return false
                    }
                    index += 1
                    return true
                }
                return one(depth: depth + 1)
            }
            if c == UInt8(ascii: "(") {
                var fields = 0
                while index < bytes.count, bytes[index] != UInt8(ascii: ")") {
                    guard one(depth: depth + 1) else { return false }
                    fields += 1
                }
                guard index < bytes.count, fields > 0 else { return false }
                index += 1
                return true
            }
            return false
        }

        var types: [String] = []
        while index < bytes.count {
            let start = index
            guard one(depth: 0) else { return nil }
            types.append(String(decoding: bytes[start..<index], as: UTF8.self))
        }
        return types
    }
}
