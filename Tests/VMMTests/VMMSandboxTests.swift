import CSeccomp
import SandboxProbe
import Testing

@testable import Sandbox
@testable import VMM

#if canImport(Glibc)
    import Glibc
#endif

@Suite("vmm's sandbox policy, enforced in a child process")
struct VMMSandboxTests {
    func run(_ number: Int, _ args: (UInt, UInt, UInt) = (0, 0, 0), policy: SeccompFilter = VMMSandbox.policy)
        throws -> Int32
    {
        let context = try policy.compile(allThreads: false)
        defer { seccomp_release(context) }
        let status = sandbox_probe(context, number, args.0, args.1, args.2, VMMSandbox.violationExitStatus)
        #expect(status >= 0 && status & 0x7F == 0)
        return (status >> 8) & 0xFF
    }

    @Test("every name in the policy is a system call this libseccomp knows")
    func compiles() throws {
        seccomp_release(try VMMSandbox.policy.compile(allThreads: true))
    }

    @Test("calls a running VM makes are allowed")
    func allowed() throws {
        #expect(try run(Int(SYS_getpid)) == 0)
        #expect(try run(Int(SYS_gettid)) == 0)
        // An ioctl the policy allows reaches the kernel: on a bad descriptor, EBADF, not the sandbox.
        #expect(try run(Int(SYS_ioctl), (9999, UInt(VMMSandbox.kvmIoctls[0]), 0)) == EBADF)
    }

    @Test("TUNSETOFFLOAD is allowed: a guest's virtio-net driver accepts offloads after the sandbox is in place")
    func tapOffload() throws {
        #expect(try run(Int(SYS_ioctl), (9999, UInt(VMMSandbox.tapIoctls[0]), 0)) == EBADF)
        #expect(VMMSandbox.tapIoctls == [0x4004_54D0])
    }

    @Test("opening files, making sockets, starting processes and other ioctls are stopped")
    func refused() throws {
        let status = VMMSandbox.violationExitStatus
        #expect(try run(Int(SYS_socket), (UInt(AF_INET), 1, 0)) == status)
        #expect(try run(Int(SYS_execve)) == status)
        #expect(try run(Int(SYS_ptrace)) == status)
        #expect(try run(Int(SYS_ioctl), (0, 0xAE01, 0)) == status)  // KVM_CREATE_VM
        #expect(try run(Int(SYS_clone), (0x11, 0, 0)) == status)  // fork-like clone (SIGCHLD)
        #expect(try run(Int(SYS_prctl), (16, 0, 0)) == status)  // PR_GET_NAME
    }

    @Test("a VM with placed vCPUs may set its calling thread's CPUs, and no other task's; others may not")
    func placingThreads() throws {
        let placing = VMMSandbox.policy(placingThreads: true)
        let status = VMMSandbox.violationExitStatus
        // Allowed: the kernel sees the call, and the missing mask is EFAULT.
        #expect(try run(Int(SYS_sched_setaffinity), (0, 128, 0), policy: placing) == EFAULT)
        #expect(try run(Int(SYS_sched_setaffinity), (1, 128, 0), policy: placing) == status)
        #expect(try run(Int(SYS_sched_setaffinity), (0, 128, 0)) == status)
    }

    @Test("opening a file fails with EACCES instead of stopping vmm (glibc's malloc may try)")
    func openFails() throws {
        let path: StaticString = "/etc/hostname"
        #expect(
            try run(Int(SYS_openat), (UInt(bitPattern: Int(AT_FDCWD)), UInt(bitPattern: path.utf8Start), 0)) == EACCES)
    }

    @Test("clone3 is refused with ENOSYS, so glibc falls back to the filterable clone")
    func clone3() throws {
        #expect(try run(435) == ENOSYS)  // SYS_clone3
    }
}
