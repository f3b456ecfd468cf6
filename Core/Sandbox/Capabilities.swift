import CSeccomp

#if canImport(Glibc)
    import Glibc
#endif

/// Process privileges: capabilities and the no_new_privs bit.
public enum Privileges {
    /// Sets no_new_privs: nothing this process executes can gain privileges (setuid, file
    /// capabilities), and unprivileged seccomp filters are allowed.
    public static func forbidNewPrivileges() throws(SandboxError) {
        guard cseccomp_set_no_new_privs() == 0 else {
            throw .system("prctl(PR_SET_NO_NEW_PRIVS)", errno: errno)
        }
    }

    /// Whether no_new_privs is set.
    public static var newPrivilegesForbidden: Bool { cseccomp_get_no_new_privs() == 1 }

    /// Empties the calling thread's effective, permitted and inheritable capabilities. Threads
    /// started afterwards inherit the empty sets; call this before starting any.
    public static func dropAllCapabilities() throws(SandboxError) {
        guard cseccomp_clear_capabilities() == 0 else { throw .system("capset", errno: errno) }
    }

    /// The calling thread's effective capability set, as a bit mask.
    public static func effectiveCapabilities() throws(SandboxError) -> UInt64 {
        var effective: UInt64 = 0
        guard cseccomp_effective_capabilities(&effective) == 0 else { throw .system("capget", errno: errno) }
        return effective
    }
}

/// A sandbox step that failed, naming it.
public enum SandboxError: Error, Equatable, CustomStringConvertible {
    case system(String, errno: Int32)
    /// A libseccomp call failed with a negative errno.
    case seccomp(String, code: Int32)
    case unknownSystemCall(String)

    public var description: String {
        switch self {
        case .system(let call, let code): return "\(call) failed: \(String(cString: strerror(code)))"
        case .seccomp(let call, let code): return "\(call) failed: \(String(cString: strerror(-code)))"
        case .unknownSystemCall(let name): return "the seccomp policy names an unknown system call '\(name)'"
        }
    }
}
