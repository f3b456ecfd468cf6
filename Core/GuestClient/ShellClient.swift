import Foundation
import GRPCCore
import GuestProtocol

/// The host half of a shell session (guest vsock port 9001).
public enum ShellClient {
    /// What the local side sends during a session.
    public enum Input: Sendable {
        case bytes([UInt8])
        case endOfInput
        case resize(rows: UInt32, columns: UInt32)
        case signal(Int32)
    }

    /// How the session's process ended.
    public enum Exit: Sendable, Equatable {
        case exited(Int32)
        case signaled(Int32)

        /// The status a shell would report: the code, or 128 + the signal.
        public var status: Int32 {
            switch self {
            case .exited(let code): code
            case .signaled(let signal): 128 + signal
            }
        }
    }

    /// Runs one session: sends `start`, then everything `input` yields; hands each chunk of output
    /// to `output` (true for stderr) and returns how the process ended.
    public static func run(
        _ endpoint: GuestEndpoint, start: Vmtools_Guest_ShellStart, input: AsyncStream<Input>,
        output: @escaping @Sendable ([UInt8], _ isError: Bool) -> Void
    ) async throws -> Exit {
        // The producer sends from a relay that ends with the session, so the call never waits on
        // local input that may never end (a terminal's).
        let (relay, relaySink) = AsyncStream.makeStream(of: Input.self)
        let forward = Task {
            for await event in input { relaySink.yield(event) }
        }
        defer {
            forward.cancel()
            relaySink.finish()
        }
        return try await endpoint.withClient { client in
            let shell = Vmtools_Guest_Shell.Client(wrapping: client)
            return try await shell.session(
                requestProducer: { writer in
                    var first = Vmtools_Guest_ShellInput()
                    first.start = start
                    try await writer.write(first)
                    for await event in relay {
                        var message = Vmtools_Guest_ShellInput()
                        switch event {
                        case .bytes(let bytes): message.stdin = Data(bytes)
                        case .endOfInput: message.stdinClosed = true
                        case .resize(let rows, let columns):
                            var size = Vmtools_Guest_WindowSize()
                            (size.rows, size.columns) = (rows, columns)
                            message.resize = size
                        case .signal(let number): message.signal = number
                        }
                        try await writer.write(message)
                    }
                },
                onResponse: { response in
                    for try await message in response.messages {
                        switch message.output {
                        case .stdout(let bytes): output([UInt8](bytes), false)
                        case .stderr(let bytes): output([UInt8](bytes), true)
                        case .exitCode(let code):
                            relaySink.finish()
                            return Exit.exited(code)
                        case .signal(let signal):
                            relaySink.finish()
                            return Exit.signaled(signal)
                        case nil: continue
                        }
                    }
                    throw GuestClientError.invalid("the shell session ended without an exit status")
                })
        }
    }
}
