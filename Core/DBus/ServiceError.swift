#if canImport(Glibc)
    import Glibc
#endif

/// What went wrong with a request to a vmtools daemon; ``kind`` names the D-Bus error
/// (`org.vmtools.Error.<Kind>`), ``message`` says what failed for a person to read.
public struct ServiceError: Error, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        case invalidArgument = "InvalidArgument"
        case notFound = "NotFound"
        case alreadyExists = "AlreadyExists"
        case resourceExhausted = "ResourceExhausted"
        case timedOut = "TimedOut"
        case failed = "Failed"
        case accessDenied = "AccessDenied"
        case busy = "Busy"
    }

    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    /// `org.vmtools.Error.<Kind>`.
    public var dbusName: String { "org.vmtools.Error.\(kind.rawValue)" }
    /// The same error as D-Bus sends it.
    public var dbusError: DBusError { DBusError(name: dbusName, message: message) }
    public var description: String { message }

    public static func invalid(_ message: String) -> Self { .init(.invalidArgument, message) }
    public static func failed(_ message: String) -> Self { .init(.failed, message) }
    /// A failed system call `what`, with errno's text.
    public static func system(_ what: String, _ code: Int32) -> Self {
        .init(.failed, "\(what): \(String(cString: strerror(code)))")
    }
}

extension DBusInterface {
    /// Adds a method of a vmtools daemon: `authorize` vets the caller first, and a
    /// ``ServiceError`` from `body` goes out as its `org.vmtools.Error.<Kind>`.
    public mutating func serviceMethod(
        _ name: String, in input: String = "", out output: String = "", inputNames: [String] = [],
        outputNames: [String] = [], authorize: @escaping @Sendable (DBusSender) throws(DBusError) -> Void,
        _ body: @escaping @Sendable (DBusMethodCall) async throws -> [DBusValue]
    ) {
        method(name, in: input, out: output, inputNames: inputNames, outputNames: outputNames) { call in
            try authorize(call.sender)
            do { return try await body(call) } catch let error as ServiceError { throw error.dbusError }
        }
    }
}
