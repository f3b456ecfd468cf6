import DBus
import DBusTestSupport
import Foundation
import SeneschalService
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// seneschal on a real, private dbus-daemon, driven by the real busctl, running the real
/// sandboxed seneschal-server. What the guest would see is read through /proc/<server>/root,
/// the server's own view of its mount namespace; the Linux 9P client's view is the testbed's
/// (Tests/integration/seneschal.sh).
@Suite("seneschal on D-Bus", .serialized)
final class SeneschalBusTests {
    let bus: PrivateBus
    let connection: DBusConnection
    let manager: ServerManager
    let base: String

    init() async throws {
        var template = Array("/tmp/seneschal-test-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw TestFailure("mkdtemp failed") }
        base = String(cString: made)
        try FileManager.default.createDirectory(atPath: base + "/docs/sub", withIntermediateDirectories: true)
        try Data("hello\n".utf8).write(to: URL(fileURLWithPath: base + "/docs/hello.txt"))
        try Data("secret\n".utf8).write(to: URL(fileURLWithPath: base + "/secret.txt"))
        var config = SeneschalConfiguration()
        config.runtimeDirectory = base + "/run"
        config.serverPath = builtProduct("seneschal-server")
        manager = try ServerManager(config: config)
        bus = try await PrivateBus()
        connection = try await bus.connect()
        _ = try await connection.export(
            SeneschalInterface.make(manager: manager) { sender throws(DBusError) in
                try CallerPolicy(purpose: "share folders").authorize(sender)
            }, at: SeneschalInterface.path)
        try await connection.requestName(SeneschalInterface.name)
    }

    deinit {
        bus.terminate()
        let manager = manager
        let base = base
        Task {
            await manager.stopAll()
            try? FileManager.default.removeItem(atPath: base)
        }
    }

    /// `busctl call` on seneschal: status and output (stdout, or stderr on failure).
    func call(_ member: String, _ arguments: String...) async throws -> (status: Int32, out: String) {
        let result = try await bus.busctl(
            ["call", SeneschalInterface.name, SeneschalInterface.path, SeneschalInterface.name, member] + arguments)
        return (result.status, result.status == 0 ? result.out : result.err)
    }

    /// StartServer on a Unix socket in the test folder; the handle.
    func startServer(_ socket: String = "9p.sock") async throws -> UInt32 {
        let reply = try await call("StartServer", "a{sv}", "1", "socket", "s", base + "/" + socket)
        #expect(reply.status == 0, "\(reply.out)")
        guard
            let handle = UInt32(
                reply.out.split(separator: " ").last?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "")
        else { throw TestFailure("StartServer answered \(reply.out)") }
        return handle
    }

    func serverPID(_ handle: UInt32) async throws -> Int32 {
        guard let server = await manager.list().first(where: { $0.handle == handle }) else {
            throw TestFailure("no server \(handle)")
        }
        return server.pid
    }

    static func status(of pid: Int32) -> [String: String] {
        let text = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        var fields: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2 { fields[String(parts[0])] = parts[1].trimmingCharacters(in: .whitespaces) }
        }
        return fields
    }

    // MARK: - Tests

    @Test("a server runs confined: own mount namespace holding only its shares, no capabilities, seccomp")
    func sandboxed() async throws {
        let handle = try await startServer()
        let pid = try await serverPID(handle)
        let status = Self.status(of: pid)
        #expect(status["CapEff"] == "0000000000000000")
        #expect(status["CapPrm"] == "0000000000000000")
        #expect(status["NoNewPrivs"] == "1")
        #expect(status["Seccomp"] == "2")
        let ours = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/mnt")
        let its = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/ns/mnt")
        #expect(ours != its)
        let root = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/root").sorted()
        #expect(root == ["proc", "shares"])
        // Its root is read-only: nothing can be added beside the shares.
        #expect(mkdir("/proc/\(pid)/root/shares/extra", 0o755) != 0)
        let reply = try await call("ListServers")
        #expect(reply.out.contains("socket:\(base)/9p.sock"), "\(reply.out)")
    }

    @Test("a 9P client on the socket gets Rversion 9P2000.L")
    func speaks9P() async throws {
        _ = try await startServer()
        let fd = try Self.connect(base + "/9p.sock")
        defer { close(fd) }
        let reply = try P9Wire(fd: fd).version()
        #expect(reply.type == 101)  // Rversion: msize[4] version[s]
        #expect(String(decoding: reply.body.dropFirst(6), as: UTF8.self) == "9P2000.L")
    }

    @Test("SharePath mounts into the server's namespace; read-only shares refuse writes; UnsharePath removes")
    func shares() async throws {
        let handle = try await startServer()
        let pid = try await serverPID(handle)
        var reply = try await call("SharePath", "usa{sv}", "\(handle)", base + "/docs", "1", "writable", "b", "true")
        #expect(reply.status == 0 && reply.out.contains("\"/docs\""), "\(reply.out)")
        reply = try await call(
            "SharePath", "usa{sv}", "\(handle)", base + "/secret.txt", "1", "name", "s", "readonly-file")
        #expect(reply.status == 0 && reply.out.contains("\"/readonly-file\""), "\(reply.out)")

        let inside = "/proc/\(pid)/root/shares"
        #expect((try? String(contentsOfFile: inside + "/docs/hello.txt", encoding: .utf8)) == "hello\n")
        #expect(FileManager.default.createFile(atPath: inside + "/docs/new.txt", contents: Data("x".utf8)))
        #expect(FileManager.default.fileExists(atPath: base + "/docs/new.txt"))
        #expect((try? String(contentsOfFile: inside + "/readonly-file", encoding: .utf8)) == "secret\n")
        let fd = open(inside + "/readonly-file", O_WRONLY)
        #expect(fd < 0 && errno == EROFS)
        if fd >= 0 { close(fd) }

        reply = try await call("ListShares", "u", "\(handle)")
        #expect(reply.out.contains(base + "/docs") && reply.out.contains("readonly-file"), "\(reply.out)")
        reply = try await call("UnsharePath", "us", "\(handle)", "/docs")
        #expect(reply.status == 0, "\(reply.out)")
        #expect(!FileManager.default.fileExists(atPath: inside + "/docs"))
        #expect(FileManager.default.fileExists(atPath: base + "/docs/hello.txt"))
    }

    @Test("through the server: walk into a share, read a file; a read-only share and the root refuse changes")
    func servesShares() async throws {
        let handle = try await startServer()
        #expect(
            try await call("SharePath", "usa{sv}", "\(handle)", base + "/docs", "1", "writable", "b", "true").status
                == 0)
        #expect(
            try await call("SharePath", "usa{sv}", "\(handle)", base + "/docs/sub", "1", "name", "s", "ro").status == 0)
        let fd = try Self.connect(base + "/9p.sock")
        defer { close(fd) }
        let wire = P9Wire(fd: fd)
        #expect(try wire.version().type == 101)
        #expect(try wire.attach(fid: 0).type == 105)
        let walked = try wire.walk(0, to: 1, ["docs", "hello.txt"])
        #expect(walked.type == 111, "Rlerror \(walked.errno ?? 0)")
        let opened = try wire.open(1, flags: UInt32(O_RDONLY))
        #expect(opened.type == 13, "Rlerror \(opened.errno ?? 0)")
        #expect(P9Wire.text(try wire.read(1, count: 100)) == "hello\n")
        // A new file in the writable share lands on the host.
        #expect(try wire.walk(0, to: 2, ["docs"]).type == 111)
        let created = try wire.create(2, name: "made.txt")
        #expect(created.type == 15, "Rlerror \(created.errno ?? 0)")
        #expect(FileManager.default.fileExists(atPath: base + "/docs/made.txt"))
        // The read-only share and the server's root refuse with EROFS.
        #expect(try wire.walk(0, to: 3, ["ro"]).type == 111)
        #expect(try wire.create(3, name: "no.txt").errno == UInt32(EROFS))
        #expect(try wire.mkdir(0, name: "beside").errno == UInt32(EROFS))
        #expect(!FileManager.default.fileExists(atPath: base + "/docs/sub/no.txt"))
    }

    static func connect(_ path: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8) + [0]) }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard connected == 0 else {
            close(fd)
            throw TestFailure("connecting to \(path): \(errno)")
        }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        return fd
    }

    @Test("what may not be shared is refused with a named error, and nothing is mounted")
    func refusals() async throws {
        let handle = try await startServer()
        symlink(base + "/docs", base + "/link")
        let invalid = "org.vmtools.Error.InvalidArgument"
        let cases: [(String, [String: DBusValue], String)] = [
            (base + "/link", [:], invalid),  // a symlink
            (base + "/docs/../secret.txt", [:], invalid),  // ..
            ("docs", [:], invalid),  // relative
            (base + "/missing", [:], "org.vmtools.Error.NotFound"),
            ("/dev/null", [:], invalid),  // neither a directory nor a regular file
            (base + "/docs", ["name": .string("..")], invalid),
            (base + "/docs", ["name": .string("a/b")], invalid),
            (base + "/docs", ["colour": .string("red")], "org.freedesktop.DBus.Error.InvalidArgs"),
            (base + "/docs", ["writable": .string("yes")], "org.freedesktop.DBus.Error.InvalidArgs"),
        ]
        let client = try await bus.connect()
        for (path, options, name) in cases {
            do {
                _ = try await client.call(
                    service: SeneschalInterface.name, member: "SharePath",
                    [.uint32(handle), .string(path), .options(options)])
                Issue.record("\(path) \(options) was shared")
            } catch {
                #expect(error.name == name, "\(path) \(options): \(error)")
            }
        }
        await client.close()
        // Twice the same name, or the same path twice, is AlreadyExists.
        #expect(try await call("SharePath", "usa{sv}", "\(handle)", base + "/docs", "0").status == 0)
        let again = try await call("SharePath", "usa{sv}", "\(handle)", base + "/docs", "1", "name", "s", "other")
        #expect(again.status != 0 && again.out.contains("already shares"), "\(again.out)")
        let sameName = try await call("SharePath", "usa{sv}", "\(handle)", base + "/docs/sub", "1", "name", "s", "docs")
        #expect(sameName.status != 0 && sameName.out.contains("already"), "\(sameName.out)")
        let shares = try await manager.shares(handle)
        #expect(shares.map(\.name) == ["docs"])
        let unknown = try await call("SharePath", "usa{sv}", "0", base + "/docs", "0")
        #expect(unknown.status != 0 && unknown.out.contains("no server with handle 0"), "\(unknown.out)")
    }

    @Test("StartServer needs exactly one endpoint; a bad server path is a clear error")
    func badServers() async throws {
        var reply = try await call("StartServer", "a{sv}", "0")
        #expect(reply.status != 0 && reply.out.contains("exactly one of"), "\(reply.out)")
        reply = try await call("StartServer", "a{sv}", "2", "socket", "s", base + "/a", "vsock_port", "u", "16384")
        #expect(reply.status != 0 && reply.out.contains("exactly one of"), "\(reply.out)")
        reply = try await call("StartServer", "a{sv}", "2", "vsock_port", "u", "80", "vsock_cid", "u", "3")
        #expect(reply.status != 0 && reply.out.contains("16384"), "\(reply.out)")
        reply = try await call("StartServer", "a{sv}", "1", "socket", "s", "relative.sock")
        #expect(reply.status != 0 && reply.out.contains("absolute"), "\(reply.out)")
        #expect(await manager.list().isEmpty)
        #expect(try FileManager.default.contentsOfDirectory(atPath: base + "/run/servers").isEmpty)
    }

    @Test("StopServer and a server's death remove its folder, socket and shares")
    func stopAndDeath() async throws {
        let first = try await startServer("one.sock")
        #expect(try await call("SharePath", "usa{sv}", "\(first)", base + "/docs", "0").status == 0)
        let second = try await startServer("two.sock")
        #expect(try await call("StopServer", "u", "\(first)").status == 0)
        #expect(!FileManager.default.fileExists(atPath: base + "/one.sock"))
        #expect(!FileManager.default.fileExists(atPath: base + "/run/servers/\(first)"))
        #expect(try await call("StopServer", "u", "\(first)").out.contains("no server with handle"))

        kill(try await serverPID(second), SIGKILL)
        for _ in 0..<100 where !(await manager.list().isEmpty) { try await Task.sleep(for: .milliseconds(50)) }
        #expect(await manager.list().isEmpty)
        #expect(!FileManager.default.fileExists(atPath: base + "/run/servers/\(second)"))
        #expect(FileManager.default.fileExists(atPath: base + "/docs/hello.txt"))
    }
}

@Suite("seneschal's server manager")
struct ServerManagerTests {
    @Test("a server executable that cannot start is a Failed error, and nothing is left behind")
    func serverMissing() async throws {
        var template = Array("/tmp/seneschal-test-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw TestFailure("mkdtemp failed") }
        let base = String(cString: made)
        defer { try? FileManager.default.removeItem(atPath: base) }
        var config = SeneschalConfiguration()
        config.runtimeDirectory = base + "/run"
        config.serverPath = "/bin/false"
        let manager = try ServerManager(config: config)
        let options = ServerOptions(endpoint: .socket(path: base + "/9p.sock"), uid: 0, gid: 0)
        await #expect {
            try await manager.start(options)
        } throws: { error in
            (error as? SeneschalError)?.kind == .failed && "\(error)".contains("did not start")
        }
        #expect(await manager.list().isEmpty)
        #expect(!FileManager.default.fileExists(atPath: base + "/9p.sock"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: base + "/run/servers").isEmpty)
    }
}

extension SeneschalBusTests {
    @Test("the exported interface is exactly dbus/interfaces/org.vmtools.Seneschal.xml")
    func introspection() async throws {
        let blocks = try await bus.interfaceBlocks(SeneschalInterface.name, path: SeneschalInterface.path)
        let exported = try #require(blocks.exported, "busctl shows the interface")
        #expect(exported == blocks.committed, "regenerate the XML when the interface changes")
    }

    @Test("StartServer with a passed connected socket (h) serves one session on it")
    func passedDescriptor() async throws {
        var pair: [Int32] = [-1, -1]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0)
        defer { close(pair[0]) }
        let client = try await bus.connect()
        let reply = try await client.call(
            service: SeneschalInterface.name, member: "StartServer",
            [.options(["fd": .fd(DBusFileDescriptor(taking: pair[1]))])])
        await client.close()
        guard case .uint32(let handle)? = reply.first else { throw TestFailure("StartServer answered \(reply)") }
        #expect(await manager.list().first?.endpoint == "fd")
        let version = Array("9P2000.L".utf8)
        var message: [UInt8] = [0, 0, 0, 0, 100, 0xFF, 0xFF, 0, 0, 1, 0, UInt8(version.count), 0] + version
        message[0] = UInt8(message.count)
        #expect(write(pair[0], message, message.count) == message.count)
        var answer = [UInt8](repeating: 0, count: 64)
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(pair[0], SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let n = read(pair[0], &answer, answer.count)
        #expect(n == message.count && answer[4] == 101)
        // The session ends when the client hangs up; so does a one-session server.
        shutdown(pair[0], Int32(SHUT_RDWR))
        for _ in 0..<100 where !(await manager.list().isEmpty) { try await Task.sleep(for: .milliseconds(50)) }
        #expect(await manager.list().isEmpty, "server \(handle) outlived its only session")
    }
}

extension SeneschalBusTests {
    @Test("users other than root act only on servers that run as them, and share only what they own")
    func ownership() async throws {
        let handle = try await manager.start(
            ServerOptions(endpoint: .socket(path: base + "/user.sock"), uid: 1000, gid: 1000))
        let pid = try await serverPID(handle)
        #expect(Self.status(of: pid)["Uid"]?.hasPrefix("1000") == true)
        try FileManager.default.createDirectory(atPath: base + "/mine", withIntermediateDirectories: true)
        chown(base + "/mine", 1000, 1000)
        #expect(try await manager.share(handle, hostPath: base + "/mine", callerUID: 1000) == "/mine")
        await #expect {
            try await manager.share(handle, hostPath: base + "/docs", callerUID: 1000)
        } throws: { ($0 as? SeneschalError)?.message.contains("may share only what it owns") == true }
        await #expect {
            try await manager.stop(handle, callerUID: 1001)
        } throws: { ($0 as? SeneschalError)?.kind == .accessDenied }
        await #expect { try await manager.unshare(handle, "/mine", callerUID: 1001) } throws: {
            ($0 as? SeneschalError)?.kind == .accessDenied
        }
        #expect(await manager.list(callerUID: 1001).isEmpty)
        #expect(await manager.list(callerUID: 1000).map(\.handle) == [handle])
        try await manager.stop(handle, callerUID: 1000)
    }
}
