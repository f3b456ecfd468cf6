import CSeccomp
import SandboxProbe
import Testing

@testable import Sandbox

#if canImport(Glibc)
    import Glibc
#endif

/// Runs `number` in a child under `filter`; returns the child's exit status, or 1000 + signal.
func probe(
    _ filter: SeccompFilter, _ number: Int, _ args: (UInt, UInt, UInt) = (0, 0, 0), reportStatus: Int32 = 0
) throws -> Int32 {
    let context = try filter.compile(allThreads: false)
    defer { seccomp_release(context) }
    let status = sandbox_probe(context, number, args.0, args.1, args.2, reportStatus)
    #expect(status >= 0)
    // WIFEXITED / WEXITSTATUS / WTERMSIG, which Swift does not import as functions.
    if status & 0x7F == 0 { return (status >> 8) & 0xFF }
    return 1000 + (status & 0x7F)
}

/// The calls every test filter must allow for the child to exit.
let exitCalls = ["exit", "exit_group"]

@Suite("seccomp filters, enforced in a child process")
struct SeccompFilterTests {
    @Test("an allowed call succeeds and a refused one fails with the chosen errno")
    func allowAndRefuse() throws {
        var filter = SeccompFilter(defaultAction: .error(EPERM))
        filter.allow(exitCalls + ["getppid"])
        #expect(try probe(filter, Int(SYS_getppid)) == 0)
        #expect(try probe(filter, Int(SYS_getuid)) == EPERM)
    }

    @Test("refuse() gives one call its own errno under an allowing default")
    func refuseOne() throws {
        var filter = SeccompFilter(defaultAction: .allow)
        filter.refuse("getuid", errno: ENOSYS)
        #expect(try probe(filter, Int(SYS_getuid)) == ENOSYS)
        #expect(try probe(filter, Int(SYS_getgid)) == 0)
    }

    @Test("an argument rule allows only the listed values")
    func argumentRule() throws {
        var filter = SeccompFilter(defaultAction: .error(EACCES))
        filter.allow(exitCalls)
        filter.allow("prctl", argument: 0, in: [15])  // PR_SET_NAME
        let name: StaticString = "probe"
        let pointer = UInt(bitPattern: name.utf8Start)
        #expect(try probe(filter, Int(SYS_prctl), (15, pointer, 0)) == 0)
        #expect(try probe(filter, Int(SYS_prctl), (16, pointer, 0)) == EACCES)  // PR_GET_NAME
    }

    @Test("trap without a reporter kills with SIGSYS; with one, the process exits with its status")
    func trapAndReport() throws {
        var filter = SeccompFilter(defaultAction: .trap)
        filter.allow(exitCalls + ["rt_sigreturn", "write"])
        #expect(try probe(filter, Int(SYS_getuid)) == 1000 + SIGSYS)
        #expect(try probe(filter, Int(SYS_getuid), reportStatus: 159) == 159)
    }

    @Test("kill-process ends the child with SIGSYS")
    func killProcess() throws {
        var filter = SeccompFilter(defaultAction: .killProcess)
        filter.allow(exitCalls)
        #expect(try probe(filter, Int(SYS_getuid)) == 1000 + SIGSYS)
    }

    @Test("an unknown system call name is an error, not a silently weaker policy")
    func unknownName() {
        var filter = SeccompFilter(defaultAction: .trap)
        filter.allow(["read", "no_such_call"])
        #expect(throws: SandboxError.unknownSystemCall("no_such_call")) { try filter.compile(allThreads: false) }
    }
}
