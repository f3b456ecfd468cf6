import Testing

@testable import Sandbox

@Suite("privileges")
struct PrivilegesTests {
    @Test("the effective capability set can be read")
    func readCapabilities() throws {
        // Root in CI has capabilities; anyone else has none. Either way the call works.
        _ = try Privileges.effectiveCapabilities()
    }

    @Test("errors name the failed step")
    func errorText() {
        #expect(SandboxError.system("capset", errno: 1).description == "capset failed: Operation not permitted")
        #expect(SandboxError.seccomp("seccomp_load", code: -22).description == "seccomp_load failed: Invalid argument")
    }
}
