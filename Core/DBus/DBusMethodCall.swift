/// Who sent a method call.
public struct DBusSender: Sendable, Hashable {
    /// The caller's unique name, for example `:1.42`.
    public var uniqueName: String
    /// The caller's effective uid, as the bus reports it; nil if the bus could not tell.
    public var uid: UInt32?
    /// The caller's process id, where known.
    public var pid: Int32?

    public init(uniqueName: String, uid: UInt32?, pid: Int32?) {
        self.uniqueName = uniqueName
        self.uid = uid
        self.pid = pid
    }
}

/// A method call as a handler sees it: the decoded arguments and the sender.
public struct DBusMethodCall: Sendable {
    /// The object path called.
    public var path: String
    /// The interface called.
    public var interface: String
    /// The method's name.
    public var member: String
    /// The arguments, in order; their signature is the method's `in` signature.
    public var arguments: [DBusValue]
    /// The caller's unique name and uid.
    public var sender: DBusSender

    public init(path: String, interface: String, member: String, arguments: [DBusValue], sender: DBusSender) {
        self.path = path
        self.interface = interface
        self.member = member
        self.arguments = arguments
        self.sender = sender
    }

    /// Argument `index` as `T`; InvalidArgs when missing or of another type.
    public func argument<T: DBusConvertible>(_ index: Int, as type: T.Type = T.self) throws(DBusError) -> T {
        try Self.argument(arguments, index, as: type)
    }

    /// Argument `index`, an `a{sv}`, as options.
    public func options(_ index: Int) throws(DBusError) -> DBusOptions {
        guard arguments.indices.contains(index) else { throw .invalidArgs("missing argument \(index)") }
        return try DBusOptions(arguments[index])
    }

    static func argument<T: DBusConvertible>(_ arguments: [DBusValue], _ index: Int, as type: T.Type) throws(DBusError)
        -> T
    {
        guard arguments.indices.contains(index) else { throw .invalidArgs("missing argument \(index)") }
        do {
            return try T(dbusValue: arguments[index])
        } catch {
            throw .invalidArgs("argument \(index) must be \(T.dbusSignature), got \(arguments[index].signature)")
        }
    }
}
