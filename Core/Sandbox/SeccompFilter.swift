import CSeccomp

#if canImport(Glibc)
    import Glibc
#endif

/// A seccomp-bpf allowlist built with libseccomp: system calls not allowed are refused with the
/// default action. Once loaded, a filter can never be removed from the process.
public struct SeccompFilter: Sendable {
    /// What happens to a system call.
    public enum Action: Sendable, Equatable {
        case allow
        /// Fails with this errno.
        case error(Int32)
        /// SIGSYS: with ``SeccompFilter/installReporter(prefix:exitStatus:)`` the process says
        /// which call was blocked and exits.
        case trap
        case killProcess

        var raw: UInt32 {
            switch self {
            case .allow: return SCMP_ACT_ALLOW
            case .error(let code): return cseccomp_act_errno(UInt16(truncatingIfNeeded: code))
            case .trap: return SCMP_ACT_TRAP
            case .killProcess: return SCMP_ACT_KILL_PROCESS
            }
        }
    }

    /// One rule: `name` gets `action`, optionally only when argument `argument` equals one of `values`.
    public struct Rule: Sendable, Equatable {
        public var name: String
        public var action: Action
        public var argument: UInt32?
        public var values: [UInt64]

        public init(_ name: String, action: Action = .allow, argument: UInt32? = nil, in values: [UInt64] = []) {
            self.name = name
            self.action = action
            self.argument = argument
            self.values = values
        }
    }

    public var defaultAction: Action
    public private(set) var rules: [Rule] = []

    public init(defaultAction: Action) {
        self.defaultAction = defaultAction
    }

    /// Allows every call in `names`, whatever its arguments.
    public mutating func allow(_ names: [String]) {
        rules += names.map { Rule($0) }
    }

    /// Allows `name` only when argument `argument` (0-based) is one of `values`.
    public mutating func allow(_ name: String, argument: UInt32, in values: [UInt64]) {
        rules.append(Rule(name, argument: argument, in: values))
    }

    /// The flags glibc's pthread_create passes to clone(2) (CLONE_VM | FS | FILES | SIGHAND |
    /// THREAD | SYSVSEM | SETTLS | PARENT_SETTID | CHILD_CLEARTID).
    public static let threadCloneFlags: UInt64 = 0x3D_0F00

    /// Allows new threads and no new processes: clone only with pthread_create's flags, and clone3
    /// (whose flags live in memory a filter cannot read) fails with ENOSYS so that glibc falls back.
    public mutating func allowThreadsOnly() {
        allow("clone", argument: 0, in: [Self.threadCloneFlags])
        refuse("clone3", errno: ENOSYS)
    }

    /// Makes `name` fail with `errno` (for example ENOSYS for clone3, whose flags live in memory
    /// a filter cannot read, so that glibc falls back to clone, whose flags it can).
    public mutating func refuse(_ name: String, errno code: Int32) {
        rules.append(Rule(name, action: .error(code)))
    }

    /// Compiles the rules into a libseccomp context the caller must release with `seccomp_release`.
    /// Unknown system call names are an error: a typo must not silently weaken a policy.
    public func compile(allThreads: Bool) throws(SandboxError) -> scmp_filter_ctx {
        guard let context = seccomp_init(defaultAction.raw) else { throw .seccomp("seccomp_init", code: -ENOMEM) }
        do {
            if allThreads {
                let result = seccomp_attr_set(context, SCMP_FLTATR_CTL_TSYNC, 1)
                guard result == 0 else { throw SandboxError.seccomp("seccomp_attr_set(TSYNC)", code: result) }
            }
            for rule in rules {
                let number = seccomp_syscall_resolve_name(rule.name)
                guard number != __NR_SCMP_ERROR else { throw SandboxError.unknownSystemCall(rule.name) }
                if let argument = rule.argument {
                    for value in rule.values {
                        var comparison = scmp_arg_cmp(arg: argument, op: SCMP_CMP_EQ, datum_a: value, datum_b: 0)
                        let result = seccomp_rule_add_array(context, rule.action.raw, number, 1, &comparison)
                        guard result == 0 else { throw SandboxError.seccomp("rule for \(rule.name)", code: result) }
                    }
                } else {
                    let result = seccomp_rule_add_array(context, rule.action.raw, number, 0, nil)
                    guard result == 0 else { throw SandboxError.seccomp("rule for \(rule.name)", code: result) }
                }
            }
        } catch let error as SandboxError {
            seccomp_release(context)
            throw error
        } catch {
            seccomp_release(context)
            throw .seccomp("compile", code: -EINVAL)
        }
        return context
    }

    /// Loads the filter into this process (every thread when `allThreads`); sets no_new_privs.
    public func load(allThreads: Bool) throws(SandboxError) {
        let context = try compile(allThreads: allThreads)
        defer { seccomp_release(context) }
        let result = seccomp_load(context)
        guard result == 0 else { throw .seccomp("seccomp_load", code: result) }
    }

    /// Makes a call blocked by `.trap` print `PREFIX: the sandbox blocked system call N` and exit
    /// with `exitStatus`.
    public static func installReporter(prefix: String, exitStatus: Int32) throws(SandboxError) {
        guard cseccomp_install_reporter(prefix, exitStatus) == 0 else {
            throw .system("sigaction(SIGSYS)", errno: errno)
        }
    }
}
