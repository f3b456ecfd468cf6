// mojo-proxy: carries Unix-socket connections (and the descriptors sent along them) between a
// VM and its host, ARCVM's mojo proxy over vsock with numbered channels. One binary, two ends:
//
//   mojo-proxy host  --socket PATH [--channel N:PATH]... [--files-dir DIR]   the host's end: waits for the guest's
//       link on PATH (where vmm sends the guest's connections to host vsock port 9900, i.e.
//       <vsock socket>_9900) and connects each guest client to its channel's host socket
//   mojo-proxy guest [--port 9900 | --link-socket PATH] [--channel N:PATH]... [--files-dir DIR] [--background]
//       the guest's end: links to the host (vsock CID 2) and listens on each channel's guest
//       socket; with --background it returns once it does (how concierge starts it in a VM); a
//       link that ends is made again
//
// Without --channel, channel 1 is ARC's bridge, /run/chrome/arc/arc_bridge.sock on both ends.
// Regular files passed either way arrive as descriptors into a FUSE file system of stand-ins
// mounted under --files-dir (root or CAP_SYS_ADMIN; without it such files are refused).
import ArgumentParser
import CGuestSystem
import CLinux
import EventLoop
import MojoProxy
import Processes

#if canImport(Glibc)
    import Glibc
#endif

@main
struct MojoProxyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mojo-proxy", abstract: "Bridge Unix-socket connections between a VM and its host.",
        subcommands: [Host.self, Guest.self])

    /// The vsock port of the link (ARCHITECTURE.md).
    static let port: UInt32 = 9900
    static let defaultChannels: [UInt32: String] = [1: "/run/chrome/arc/arc_bridge.sock"]

    struct ChannelOptions: ParsableArguments {
        @Option(name: .customLong("channel"), help: "N:PATH: channel N is the socket at PATH on this end (repeatable).")
        var channels: [String] = []

        func parsed() throws -> [UInt32: String] {
            guard !channels.isEmpty else { return MojoProxyCommand.defaultChannels }
            var result: [UInt32: String] = [:]
            for channel in channels {
                let parts = channel.split(separator: ":", maxSplits: 1)
                guard parts.count == 2, let number = UInt32(parts[0]), number > 0, parts[1].hasPrefix("/") else {
                    throw ValidationError("--channel \(channel): expected N:/absolute/path with N > 0")
                }
                guard result[number] == nil else { throw ValidationError("channel \(number) is given twice") }
                result[number] = String(parts[1])
            }
            return result
        }

        @Option(help: "Where regular files the other end passes are served from (a FUSE mount beneath it).")
        var filesDir: String = "/run/mojo-proxy"
    }

    struct Host: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The host's end: serve the guest's links.")

        @Option(help: "The Unix socket the guest's link arrives on (<vsock socket>_9900 for a vmm VM).")
        var socket: String

        @OptionGroup var channels: ChannelOptions

        func run() async throws {
            signal(SIGPIPE, SIG_IGN)
            let channels = try channels.parsed()
            let listener = try UnixSocket.listen(at: socket, mode: 0o600)
            _ = fcntl(listener, F_SETFL, fcntl(listener, F_GETFL) & ~O_NONBLOCK)
            say("waiting for the guest on \(socket); channels \(Self.describe(channels))")
            // One link at a time: a guest proxy that restarts links again.
            while true {
                let link = await Task.detached { accept4(listener, nil, nil, Int32(SOCK_CLOEXEC.rawValue)) }.value
                guard link >= 0 else {
                    if errno == EINTR || errno == ECONNABORTED { continue }
                    throw ValidationError("accept on \(socket): \(String(cString: strerror(errno)))")
                }
                let proxy = try MojoLink(
                    side: .host, link: link, channels: channels, filesDirectory: self.channels.filesDir
                ) { say($0) }
                try proxy.start()
                say("the guest linked")
                let reason = await proxy.ended()
                proxy.stop()
                say("the link ended (\(reason)); waiting for the guest again")
            }
        }

        static func describe(_ channels: [UInt32: String]) -> String {
            channels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        }
    }

    struct Guest: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The guest's end: link to the host and listen.")

        @Option(help: "The host's vsock port.")
        var port: UInt32 = MojoProxyCommand.port

        @Option(help: "Link through this Unix socket instead of vsock (tests, or a host-side socket).")
        var linkSocket: String?

        @OptionGroup var channels: ChannelOptions

        @Flag(
            help: """
                Return once linked and listening, with the proxy left running in the background \
                (its messages go to /dev/console); exit 1 with the reason if it could not start.
                """)
        var background = false

        @Option(help: .hidden)
        var readyFd: Int32?

        func run() async throws {
            signal(SIGPIPE, SIG_IGN)
            let channels = try channels.parsed()
            if background { try Self.startInBackground(channels: channels) }
            for path in channels.values { Self.makeParentFolders(of: path) }
            // The first link must work (a caller waits to hear so); later ones are retried,
            // so that a host proxy that restarts finds the guest again.
            var linked = false
            while true {
                let link: Int32
                do { link = try connectLink() } catch  where linked {
                    try await Task.sleep(for: .seconds(1))
                    continue
                }
                let proxy = try MojoLink(
                    side: .guest, link: link, channels: channels, filesDirectory: self.channels.filesDir
                ) { say($0) }
                try proxy.start()
                say("linked to the host\(linked ? " again" : ""); listening on \(Host.describe(channels))")
                if let readyFd, !linked {
                    _ = write(readyFd, "ready\n", 6)
                    close(readyFd)
                }
                linked = true
                let reason = await proxy.ended()
                proxy.stop()
                say("the link to the host ended (\(reason)); linking again")
                try await Task.sleep(for: .seconds(1))
            }
        }

        /// A stream to the host's proxy.
        func connectLink() throws -> Int32 {
            if let linkSocket { return try UnixSocket.connect(to: linkSocket) }
            let link = cgs_vsock_connect(2, port)
            guard link >= 0 else {
                throw ValidationError(
                    "cannot link to the host's vsock port \(port): \(String(cString: strerror(-link)))")
            }
            return link
        }
    }
}

// MARK: - The guest's end in the background

extension MojoProxyCommand.Guest {
    /// Starts this command again without `--background` and with a pipe to say when it is
    /// linked and listening; returns only through exit: 0 once it says so, 1 if it ends first.
    /// (posix_spawn, not fork: the async runtime's threads already run.)
    static func startInBackground(channels: [UInt32: String]) throws -> Never {
        var ends: [Int32] = [-1, -1]
        guard pipe2(&ends, O_CLOEXEC) == 0 else { throw ValidationError("pipe: \(String(cString: strerror(errno)))") }
        let arguments = CommandLine.arguments.dropFirst().filter { $0 != "--background" } + ["--ready-fd", "3"]
        let console = access("/dev/console", W_OK) == 0 ? "/dev/console" : "/dev/null"
        let child: ChildProcess
        do {
            child = try ChildProcess.spawn(
                executable: "/proc/self/exe", arguments: Array(arguments), descriptors: [ends[1]], output: console)
        } catch {
            throw ValidationError("starting the proxy: \(error)")
        }
        close(ends[1])
        var reply = [UInt8](repeating: 0, count: 6)
        let n = read(ends[0], &reply, reply.count)
        guard n == 6, reply == Array("ready\n".utf8) else {
            say("the proxy ended before it was linked and listening (its messages are on \(console))")
            Glibc.exit(1)
        }
        say("linked to the host; listening on \(MojoProxyCommand.Host.describe(channels)) (pid \(child.pid))")
        Glibc.exit(0)
    }

    /// A channel's socket may live in a folder the guest does not have yet (/run/chrome/arc).
    static func makeParentFolders(of path: String) {
        var folder = ""
        for part in path.split(separator: "/").dropLast() {
            folder += "/" + part
            mkdir(folder, 0o755)
        }
    }
}

func say(_ message: String) {
    let line = "mojo-proxy: \(message)\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
}
