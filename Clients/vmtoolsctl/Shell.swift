import ArgumentParser
import Dispatch
import Foundation
import GuestClient
import GuestProtocol

#if canImport(Glibc)
    import Glibc
#endif

/// `vmtoolsctl shell [-- CMD...]`: an interactive shell in the guest (ChromeOS's vsh).
struct Shell: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Open a shell in the guest, or run a command there with a terminal.",
        discussion:
            "With a terminal on stdin the session gets a PTY (raw mode here, window size kept in step); otherwise plain pipes. Exits with the remote status."
    )

    @OptionGroup var endpoint: EndpointOptions
    @OptionGroup var bus: BusOptions

    @Flag(inversion: .prefixedNo, help: "Give the session a terminal (default: when stdin is one).")
    var tty: Bool?

    @Argument(
        parsing: .captureForPassthrough,
        help: "The VM's name (unless --vsock or --socket), then -- and a command to run instead of the login shell.")
    var words: [String] = []

    mutating func run() async throws {
        let useTerminal = tty ?? (isatty(0) == 1)
        var start = Vmtools_Guest_ShellStart()
        if EndpointOptions.asksForHelp(words) { throw CleanExit.helpRequest(self) }
        let (target, command) = try await endpoint.resolve(
            words, defaultPort: GuestEndpoint.shellPort, socketField: "shell_socket", bus: bus)
        start.argv = command
        start.tty = useTerminal
        if let term = ProcessInfo.processInfo.environment["TERM"], useTerminal { start.env["TERM"] = term }
        if useTerminal, let size = Terminal.size() {
            var window = Vmtools_Guest_WindowSize()
            (window.rows, window.columns) = size
            start.size = window
        }

        let (input, sink) = AsyncStream.makeStream(of: ShellClient.Input.self)
        let rawMode = useTerminal && isatty(0) == 1 ? Terminal.enterRawMode() : nil
        defer { rawMode.map(Terminal.restore) }
        var resizes: (any DispatchSourceSignal)?
        if useTerminal {
            signal(SIGWINCH, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: SIGWINCH)
            source.setEventHandler {
                if let (rows, columns) = Terminal.size() { sink.yield(.resize(rows: rows, columns: columns)) }
            }
            source.resume()
            resizes = source
        }
        defer { resizes?.cancel() }
        Thread.detachNewThread {
            var buffer = [UInt8](repeating: 0, count: 16 << 10)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { break }
                sink.yield(.bytes(Array(buffer.prefix(n))))
            }
            sink.yield(.endOfInput)
        }

        let exit = try await guestCall {
            try await ShellClient.run(target, start: start, input: input) { bytes, isError in
                writeOut(bytes, to: isError ? 2 : 1)
            }
        }
        if exit.status != 0 { throw ExitCode(exit.status) }
    }
}

/// The local terminal: size and raw mode.
enum Terminal {
    static func size() -> (UInt32, UInt32)? {
        var size = winsize()
        guard ioctl(0, UInt(TIOCGWINSZ), &size) == 0, size.ws_row > 0 else { return nil }
        return (UInt32(size.ws_row), UInt32(size.ws_col))
    }

    /// Puts stdin's terminal in raw mode (keys go to the guest as typed); returns what to restore.
    static func enterRawMode() -> termios? {
        var saved = termios()
        guard tcgetattr(0, &saved) == 0 else { return nil }
        var raw = saved
        cfmakeraw(&raw)
        tcsetattr(0, TCSADRAIN, &raw)
        return saved
    }

    static func restore(_ saved: termios) {
        var saved = saved
        tcsetattr(0, TCSADRAIN, &saved)
    }
}
