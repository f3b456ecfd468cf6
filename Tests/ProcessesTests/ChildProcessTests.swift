import Foundation
import Processes
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite("child processes")
struct ChildProcessTests {
    @Test("exit status and signals come back through the pidfd")
    func termination() async throws {
        let exits = try ChildProcess.spawn(executable: "/bin/sh", arguments: ["-c", "exit 7"])
        #expect(await exits.terminated(within: 10) == .exited(7))
        let sleeper = try ChildProcess.spawn(executable: "/bin/sleep", arguments: ["30"])
        #expect(await sleeper.terminated(within: 0.2) == nil, "still running")
        #expect(sleeper.signal(SIGTERM))
        #expect(await sleeper.terminated(within: 10) == .signaled(SIGTERM))
        #expect(!sleeper.signal(SIGTERM), "a process that ended takes no more signals")
    }

    @Test("descriptors become the child's 3, 4, ...; stdin is /dev/null; output is appended to a file")
    func descriptors() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("child-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        var first: [Int32] = [0, 0]
        var second: [Int32] = [0, 0]
        #expect(pipe(&first) == 0 && pipe(&second) == 0)
        for fd in first + second { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        let log = "\(folder)/out.log"
        try Data("before\n".utf8).write(to: URL(fileURLWithPath: log))
        // The write ends go to 3 and 4, in that order, even though they are not numbered so here.
        let child = try ChildProcess.spawn(
            executable: "/bin/sh",
            arguments: ["-c", "echo three >&3; echo four >&4; cat; echo out; echo err >&2"],
            descriptors: [first[1], second[1]], output: log)
        close(first[1])
        close(second[1])
        #expect(await child.terminated(within: 10) == .exited(0))
        #expect(Self.readAll(first[0]) == "three\n")
        #expect(Self.readAll(second[0]) == "four\n")
        #expect(try String(contentsOfFile: log, encoding: .utf8) == "before\nout\nerr\n")
    }

    @Test("a missing program is an error naming it")
    func missing() {
        #expect { try ChildProcess.spawn(executable: "/no/such/vmm", arguments: []) } throws: {
            "\($0)".contains("/no/such/vmm")
        }
    }

    @Test("a process concierge did not start can be adopted and its end noticed")
    func adopt() async throws {
        let started = try ChildProcess.spawn(executable: "/bin/sleep", arguments: ["30"])
        let adopted = try ChildProcess.adopt(pid: started.pid)
        #expect(adopted.signal(SIGKILL))
        #expect(await adopted.terminated(within: 10) == .ended)
        #expect(await started.terminated(within: 10) == .signaled(SIGKILL))
        #expect(throws: ProcessError.self) { try ChildProcess.adopt(pid: 0x3FFF_FFFF) }
    }

    static func readAll(_ fd: Int32) -> String {
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 256)
        while true {
            let n = read(fd, &buffer, buffer.count)
            if n <= 0 { break }
            bytes += buffer[0..<n]
        }
        close(fd)
        return String(decoding: bytes, as: UTF8.self)
    }
}
