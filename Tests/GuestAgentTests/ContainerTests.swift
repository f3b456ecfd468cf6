import Foundation
import GRPCCore
import Testing

@testable import GuestAgent

/// Containers started for real on this machine (as root): new namespaces around a root folder
/// holding a static busybox. cgroup2 is not mounted here, so these run without one (the testbed
/// test covers the cgroup).
@Suite("maitred's containers", .serialized)
struct ContainerTests {
    /// A root folder with busybox as /bin/sh, removed afterwards.
    final class RootFolder {
        let path: String

        init() throws {
            path = NSTemporaryDirectory() + "container-root-" + UUID().uuidString.prefix(8).lowercased()
            try FileManager.default.createDirectory(atPath: "\(path)/bin", withIntermediateDirectories: true)
            // Copied by cp, not in this process: a child forked meanwhile by a test running in
            // parallel would inherit our descriptor open for writing, and exec would then fail
            // with ETXTBSY ("Text file busy") until that child execs in turn.
            let copy = try Process.run(
                URL(fileURLWithPath: "/bin/cp"), arguments: ["/bin/busybox", "\(path)/bin/busybox"])
            copy.waitUntilExit()
            guard copy.terminationStatus == 0 else { throw CocoaError(.fileWriteUnknown) }
            try FileManager.default.createSymbolicLink(atPath: "\(path)/bin/sh", withDestinationPath: "busybox")
        }

        deinit { try? FileManager.default.removeItem(atPath: path) }

        func read(_ file: String) -> String? {
            try? String(contentsOfFile: "\(path)/\(file)", encoding: .utf8)
        }
    }

    static func manager(movesRoot: Bool = false) throws -> ContainerManager {
        var configuration = ContainerManager.Configuration()
        configuration.movesRoot = movesRoot
        configuration.cgroupRoot = "/nonexistent/containers"
        configuration.consolePath = "/dev/null"
        return ContainerManager(reaper: try ProcessReaper(scope: .ownChildren), configuration: configuration)
    }

    static func request(_ root: RootFolder, _ script: String, name: String = "c1") -> ContainerManager.Request {
        var request = ContainerManager.Request(name: name, rootfs: root.path, token: "token-\(name)-0123")
        request.command = ["/bin/busybox", "sh", "-c", script]
        return request
    }

    static func eventually(_ condition: () -> Bool) async -> Bool {
        for _ in 0..<200 {
            if condition() { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return condition()
    }

    @Test(
        "a container is PID 1 of its own namespace, with its hostname, token, /dev, /proc and root (pivot_root, or a moved root as from an initramfs)",
        arguments: [false, true])
    func startsIsolated(movesRoot: Bool) async throws {
        let root = try RootFolder()
        let manager = try Self.manager(movesRoot: movesRoot)
        #expect(FileManager.default.createFile(atPath: "\(root.path)/marker", contents: Data()))
        let script = """
            echo "$$ $(busybox hostname) $(busybox cat /dev/.container_token)" >/out.tmp
            busybox stat -c %a /dev/.container_token >>/out.tmp
            busybox ls /dev | busybox tr '\\n' ' ' >>/out.tmp; echo >>/out.tmp
            busybox ls / | busybox tr '\\n' ' ' >>/out.tmp; echo >>/out.tmp
            busybox ps -o pid,args >/ps.tmp; busybox wc -l </ps.tmp >>/out.tmp
            busybox mv /out.tmp /out
            exec busybox sleep 60
            """
        let container = try manager.start(Self.request(root, script))
        #expect(container.pid > 1)
        #expect(await Self.eventually { root.read("out") != nil }, "the container wrote nothing")
        let lines = (root.read("out") ?? "").split(separator: "\n").map(String.init)
        #expect(lines.first == "1 c1 token-c1-0123", "PID 1, hostname, token: \(lines)")
        #expect(lines.dropFirst().first == "600")
        let devices = Set(lines.dropFirst(2).first?.split(separator: " ").map(String.init) ?? [])
        #expect(
            devices.isSuperset(of: ["null", "zero", "full", "random", "urandom", "tty", "pts", "ptmx", "shm", "fd"]))
        let top = Set(lines.dropFirst(3).first?.split(separator: " ").map(String.init) ?? [])
        #expect(top == ["bin", "dev", "marker", "out.tmp", "proc", "run", "sys"], "only the root folder: \(top)")
        #expect(lines.dropFirst(4).first == "3", "ps sees only its header, sh and itself: \(lines)")
        #expect(manager.containers.map(\.name) == ["c1"])

        // A namespace's PID 1 gets no signal it has no handler for: sleep ignores SIGTERM, and
        // is killed after the grace period.
        try await manager.stop("c1", grace: .milliseconds(300))
        #expect(manager.containers.isEmpty)
        #expect(kill(container.pid, 0) != 0, "its first process is gone")
    }

    @Test(
        "with changes_dir the root is an overlay: changes land in the changes folder, the image stays as it was, and the next start sees them"
    )
    func overlayRoot() async throws {
        // As by default in a guest: the changes kept inside the image, beside another
        // container's, which neither may see.
        let image = try RootFolder()
        #expect(FileManager.default.createFile(atPath: "\(image.path)/marker", contents: Data("image\n".utf8)))
        try FileManager.default.createDirectory(
            atPath: "\(image.path)/var/containers/other/upper", withIntermediateDirectories: true)
        #expect(
            FileManager.default.createFile(atPath: "\(image.path)/var/containers/other/upper/secret", contents: Data()))
        let manager = try Self.manager()
        var request = Self.request(
            image,
            "echo changed >/marker; echo new >/new; busybox ls -A /var/containers >/hidden; busybox mv /new /done; exec busybox sleep 60"
        )
        request.changesDirectory = "\(image.path)/var/containers/c1"
        _ = try manager.start(request)
        #expect(await Self.eventually { image.read("var/containers/c1/upper/done") != nil }, "the change is in upper/")
        #expect(image.read("marker") == "image\n", "the image is untouched")
        #expect(image.read("done") == nil)
        #expect(image.read("var/containers/c1/upper/hidden") == "", "the containers' changes are hidden in it")
        #expect(image.read("var/containers/c1/root/marker") == nil, "the overlay is mounted in the container only")
        try await manager.stop("c1", grace: .milliseconds(300))

        request.command = [
            "/bin/busybox", "sh", "-c",
            "busybox cat /marker /done >/seen.tmp; busybox mv /seen.tmp /seen; exec busybox sleep 60",
        ]
        _ = try manager.start(request)
        #expect(await Self.eventually { image.read("var/containers/c1/upper/seen") != nil })
        #expect(image.read("var/containers/c1/upper/seen") == "changed\nnew\n")
        try await manager.stop("c1", grace: .milliseconds(300))
    }

    @Test("a first process that ignores SIGTERM is killed after the grace period")
    func stopKills() async throws {
        let root = try RootFolder()
        let manager = try Self.manager()
        _ = try manager.start(Self.request(root, "trap '' TERM; echo up >/up; while :; do busybox sleep 1; done"))
        #expect(await Self.eventually { root.read("up") != nil })
        let started = ContinuousClock.now
        try await manager.stop("c1", grace: .milliseconds(500))
        #expect(ContinuousClock.now - started < .seconds(5))
        #expect(manager.containers.isEmpty)
    }

    @Test("a container that ends by itself is forgotten; its name can be used again")
    func endsByItself() async throws {
        let root = try RootFolder()
        let manager = try Self.manager()
        _ = try manager.start(Self.request(root, "exit 0"))
        #expect(await Self.eventually { manager.containers.isEmpty })
        _ = try manager.start(Self.request(root, "exec busybox sleep 60"))
        #expect(throws: RPCError.self) { try manager.start(Self.request(root, "true")) }
        try await manager.stop("c1", grace: .milliseconds(300))
    }

    @Test("a program that is not in the container fails naming the step, and leaves nothing running")
    func missingProgram() throws {
        let root = try RootFolder()
        let manager = try Self.manager()
        var request = Self.request(root, "")
        request.command = ["/usr/bin/nothing-here"]
        let error = #expect(throws: RPCError.self) { try manager.start(request) }
        #expect(error?.code == .notFound)
        #expect(error?.message == "starting container c1: running its first program: No such file or directory")
        #expect(manager.containers.isEmpty)
    }

    @Test(
        "bad requests are refused before anything starts",
        arguments: [
            ("", "/tmp", "t", "container name ''"), ("-a", "/tmp", "t", "container name '-a'"),
            ("UPPER", "/tmp", "t", "container name 'UPPER'"),
            (String(repeating: "a", count: 64), "/tmp", "t", "container name"),
            ("ok", "relative", "t", "rootfs 'relative' must be an absolute folder"),
            ("ok", "/", "t", "rootfs '/' must be an absolute folder"),
            ("ok", "/nonexistent-root", "t", "rootfs /nonexistent-root: No such file"),
            ("ok", "/etc/hostname", "t", "is not a folder"),
            ("ok", "/tmp", "", "the token must be"), ("ok", "/tmp", "has space", "the token must be"),
        ])
    func refused(name: String, rootfs: String, token: String, message: String) throws {
        let manager = try Self.manager()
        let error = #expect(throws: RPCError.self) {
            try manager.start(ContainerManager.Request(name: name, rootfs: rootfs, token: token))
        }
        #expect(error?.message.contains(message) == true, "\(error?.message ?? "")")
        #expect(manager.containers.isEmpty)
    }

    @Test("a relative command is refused, and stopping an unknown container is NOT_FOUND")
    func otherRefusals() async throws {
        let root = try RootFolder()
        let manager = try Self.manager()
        var request = Self.request(root, "")
        request.command = ["sh"]
        #expect(throws: RPCError.self) { try manager.start(request) }
        for changes in ["relative", "/", "/tmp/a,b", "/tmp/a:b"] {
            var overlay = ContainerManager.Request(name: "ok", rootfs: "/", token: "t")
            overlay.changesDirectory = changes
            let error = #expect(throws: RPCError.self) { try manager.start(overlay) }
            #expect(error?.message.contains("changes_dir '\(changes)' must be") == true, "\(error?.message ?? "")")
        }
        let error = await #expect(throws: RPCError.self) { try await manager.stop("nope") }
        #expect(error?.code == .notFound)
    }
}
