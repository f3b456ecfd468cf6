// seneschal-server: one 9P2000.L server, started by seneschal per StartServer (ChromeOS's 9s).
// It confines itself (ServerSandbox) and serves the shares mounted under its folder's shares/
// on the socket it was given: a listening socket (a session per connection) or a connected one
// (one session, then it exits).
//
//   seneschal-server --folder DIR --listen-fd 3 --uid U --gid G [--accept-cid CID] [--no-sandbox]
import ArgumentParser
import CLinux
import EventLoop
import P9

#if canImport(Glibc)
    import Glibc
#endif

@main
struct SeneschalServer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "seneschal-server", abstract: "A sandboxed 9P2000.L server for seneschal's shares.")

    @Option(help: "The server's folder: shares/ is exported, proc/ is where /proc goes in the sandbox.")
    var folder: String

    @Option(help: "The socket to serve: listening (a session per connection) or connected (one session).")
    var listenFd: Int32 = 3

    @Option(help: "Write \"ready\" and a newline here once confined and serving, then close it.")
    var readyFd: Int32?

    @Option(help: "Serve as this user.")
    var uid: UInt32

    @Option(help: "Serve as this group.")
    var gid: UInt32

    @Option(help: "On a vsock socket: accept connections from this CID only.")
    var acceptCid: UInt32?

    @Flag(help: "Do not enter the sandbox (tests of the server itself).")
    var noSandbox = false

    func run() throws {
        signal(SIGPIPE, SIG_IGN)
        var root = folder + "/shares"
        if !noSandbox {
            do { try ServerSandbox.enter(folder: folder, uid: uid, gid: gid) } catch {
                fail("\(error)")
            }
            root = "/shares"
        }
        let server: P9Server
        // Set-ID bits are dropped: a guest must not plant a set-ID program in a host folder.
        do { server = try P9Server(configuration: .init(root: root, allowsSetID: false)) } catch { fail("\(error)") }
        let socket = checkedSocket()
        // Blocking I/O: a session is a thread that reads its socket.
        _ = fcntl(socket, F_SETFL, fcntl(socket, F_GETFL) & ~O_NONBLOCK)
        var listening: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        let isListener = getsockopt(socket, SOL_SOCKET, SO_ACCEPTCONN, &listening, &length) == 0 && listening != 0
        if let readyFd {
            _ = "ready\n".withCString { write(readyFd, $0, 6) }
            close(readyFd)
        }
        guard isListener else {
            UnixSocket.setSendBuffer(listenFd)
            let end = server.serve(fd: listenFd)
            say("session ended: \(end)")
            return
        }
        say("serving \(folder)\(acceptCid.map { " to CID \($0)" } ?? "")")
        while true {
            let client = accept4(listenFd, nil, nil, Int32(SOCK_CLOEXEC.rawValue))
            if client < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                fail("accept: \(String(cString: strerror(errno)))")
            }
            if let acceptCid, let peer = Self.vsockPeerCID(client), peer != acceptCid {
                say("refused a connection from CID \(peer) (this server is for CID \(acceptCid))")
                close(client)
                continue
            }
            // Replies carry file data into the VM: see UnixSocket.setSendBuffer.
            UnixSocket.setSendBuffer(client)
            do {
                try server.serveInBackground(fd: client) { end in say("session ended: \(end)") }
            } catch {
                close(client)
                say("cannot start a session: \(error)")
            }
        }
    }

    private func checkedSocket() -> Int32 {
        var info = stat()
        guard fstat(listenFd, &info) == 0, info.st_mode & S_IFMT == S_IFSOCK else {
            fail("descriptor \(listenFd) is not a socket")
        }
        return listenFd
    }

    /// The CID of a vsock peer, nil for other sockets.
    static func vsockPeerCID(_ fd: Int32) -> UInt32? {
        // struct sockaddr_vm: family (2), reserved (2), port (4), cid (4), flags, zero.
        var address = [UInt8](repeating: 0, count: 16)
        var length = socklen_t(address.count)
        let result = address.withUnsafeMutableBytes {
            getpeername(fd, $0.baseAddress?.assumingMemoryBound(to: sockaddr.self), &length)
        }
        guard result == 0, UInt16(address[0]) | UInt16(address[1]) << 8 == 40 else { return nil }  // AF_VSOCK
        return address[8..<12].reversed().reduce(0) { $0 << 8 | UInt32($1) }
    }
}

func say(_ message: String) {
    let line = "seneschal-server[\(getpid())]: \(message)\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
}

func fail(_ message: String) -> Never {
    say(message)
    exit(1)
}
