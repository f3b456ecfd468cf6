/// One mojo-proxy channel of a VM: the guest's clients of `guestSocket` reach the host's
/// listener at `hostSocket`, descriptors included (`Daemons/mojo-proxy`). StartVm's
/// `mojo_channels` option, `a(uss)`: number, guest socket, host socket.
public struct MojoChannel: Codable, Sendable, Equatable {
    public var number: UInt32
    public var guestSocket: String
    public var hostSocket: String

    public init(number: UInt32, guestSocket: String, hostSocket: String) {
        self.number = number
        self.guestSocket = guestSocket
        self.hostSocket = hostSocket
    }

    /// The `--channel` word of the host's and the guest's proxy.
    var hostArgument: String { "\(number):\(hostSocket)" }
    var guestArgument: String { "\(number):\(guestSocket)" }

    /// Socket paths travel as words of a systemd environment file and a command line: absolute,
    /// short enough for a socket address, and without spaces, quotes, `$` or backslashes.
    static func validPath(_ path: String) -> Bool {
        path.hasPrefix("/") && path.utf8.count <= 107 && !path.contains("/../") && !path.hasSuffix("/..")
            && path.unicodeScalars.allSatisfy {
                $0.isASCII && $0.value > 0x20 && $0.value < 0x7F && !"\"'`$\\".unicodeScalars.contains($0)
            }
    }

    /// Checks a VM's channels: numbers from 1, each once; valid paths; each guest socket once.
    static func validate(_ channels: [MojoChannel]) throws(ConciergeError) {
        var numbers = Set<UInt32>()
        var guestSockets = Set<String>()
        for channel in channels {
            guard channel.number > 0 else { throw .invalid("mojo channel numbers start at 1, got 0") }
            guard numbers.insert(channel.number).inserted else {
                throw .invalid("mojo channel \(channel.number) is given twice")
            }
            for (side, path) in [("guest", channel.guestSocket), ("host", channel.hostSocket)] where !validPath(path) {
                throw .invalid(
                    "mojo channel \(channel.number): the \(side) socket '\(path)' must be an absolute path of at most 107 bytes without spaces, quotes, '$' or '\\'"
                )
            }
            guard guestSockets.insert(channel.guestSocket).inserted else {
                throw .invalid("mojo channel \(channel.number): guest socket \(channel.guestSocket) is used twice")
            }
        }
    }
}
