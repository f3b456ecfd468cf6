import GRPCCore

#if canImport(Glibc)
    import Glibc
#endif

/// The gRPC errors maitred returns: each names what failed, with the system's reason.
enum AgentError {
    /// A system call failed; the status code follows its errno (ENOENT → NOT_FOUND, ...).
    static func system(_ what: String, errno code: Int32) -> RPCError {
        RPCError(code: statusCode(errno: code), message: "\(what): \(String(cString: strerror(code)))")
    }

    /// The request itself is wrong.
    static func invalid(_ message: String) -> RPCError {
        RPCError(code: .invalidArgument, message: message)
    }

    static func statusCode(errno code: Int32) -> RPCError.Code {
        switch code {
        case ENOENT, ENODEV, ENXIO, ESRCH: .notFound
        case EINVAL, ENAMETOOLONG, ENOTDIR, ENOEXEC, E2BIG: .invalidArgument
        case EPERM, EACCES: .permissionDenied
        case EEXIST: .alreadyExists
        case EBUSY: .failedPrecondition
        case ECONNREFUSED, ETIMEDOUT, EHOSTUNREACH: .unavailable
        default: .internalError
        }
    }
}
