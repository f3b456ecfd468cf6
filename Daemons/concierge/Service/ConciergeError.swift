/// What went wrong with a request to concierge; ``kind`` names the D-Bus error
/// (`org.vmtools.Error.<Kind>`), ``message`` says what failed for a person to read.
public struct ConciergeError: Error, Equatable, CustomStringConvertible {
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
    public var description: String { message }

    static func invalid(_ message: String) -> Self { .init(.invalidArgument, message) }
    static func failed(_ message: String) -> Self { .init(.failed, message) }
}
