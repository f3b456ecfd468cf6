#if canImport(Glibc)
    import Glibc
#endif

/// What went wrong reaching a guest, in words a user can act on.
public enum GuestClientError: Error, CustomStringConvertible, Equatable {
    case system(String, errno: Int32)
    case invalid(String)
    /// The VM answered `CONNECT` with something other than `OK`: nothing listens on that port.
    case refused(port: UInt32, reply: String)
    case timedOut(String)

    public var description: String {
        switch self {
        case .system(let what, let code): "\(what): \(String(cString: strerror(code)))"
        case .invalid(let message): message
        case .refused(let port, let reply):
            "the guest refused vsock port \(port)"
                + (reply.isEmpty ? " (nothing listens there)" : " (it said \"\(reply)\")")
        case .timedOut(let what): "timed out: \(what)"
        }
    }
}
