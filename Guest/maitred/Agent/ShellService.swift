import CGuestSystem
import GRPCCore
import GuestProtocol
import NIOCore

#if canImport(Glibc)
    import Glibc
#endif

/// The shell into the guest (vsock port 9001), ChromeOS's vsh: one bidirectional stream per
/// session, a PTY (or plain pipes) between it and a process in its own session.
public struct ShellService: Vmtools_Guest_Shell.SimpleServiceProtocol {
    let reaper: ProcessReaper
    /// How long output may still drain after the process ended (background jobs can hold a
    /// terminal open forever).
    static let drainTime = Duration.seconds(2)

    public init(reaper: ProcessReaper) { self.reaper = reaper }

    public func session(
        request: RPCAsyncSequence<Vmtools_Guest_ShellInput, any Error>,
        response: RPCWriter<Vmtools_Guest_ShellOutput>,
        context: ServerContext
    ) async throws {
        nonisolated(unsafe) var inputs = request.makeAsyncIterator()
        guard let first = try await inputs.next(), case .start(let start)? = first.input else {
            throw AgentError.invalid("a shell session must begin with a start message")
        }
        let session = try ShellProcess.start(start, reaper: reaper)
        let writer = ShellOutputWriter(response)
        let termination = try await withTaskCancellationHandler {
            try await run(session, inputs: { try await inputs.next() }, writer: writer)
        } onCancel: {
            session.signal(SIGHUP)  // the host went away: end the session as a hang-up would
        }
        var last = Vmtools_Guest_ShellOutput()
        switch termination {
        case .exited(let code): last.exitCode = code
        case .signaled(let signal): last.signal = signal
        }
        try await writer.write(last)
    }

    private enum Finished {
        case output, input
        case process(Termination)
        case drainDeadline
    }

    private func run(
        _ session: ShellProcess, inputs: @escaping @Sendable () async throws -> Vmtools_Guest_ShellInput?,
        writer: ShellOutputWriter
    ) async throws -> Termination {
        try await withThrowingTaskGroup(of: Finished.self) { group in
            group.addTask {
                try await session.pump(to: writer)
                return .output
            }
            group.addTask {
                while let input = try await inputs() { try await session.handle(input) }
                return .input
            }
            group.addTask { .process(await reaper.wait(for: session.pid)) }
            var termination: Termination?
            var outputDone = false
            while let finished = try await group.next() {
                switch finished {
                case .input: continue
                case .output: outputDone = true
                case .process(let ended):
                    termination = ended
                    group.addTask {
                        try await Task.sleep(for: Self.drainTime)
                        return .drainDeadline
                    }
                case .drainDeadline: outputDone = true
                }
                if let termination, outputDone {
                    group.cancelAll()
                    return termination
                }
            }
            throw AgentError.invalid("internal: the shell session ended without its process")
        }
    }
}

/// Serializes writes to the response stream (stdout and stderr are pumped concurrently).
actor ShellOutputWriter {
    private let response: RPCWriter<Vmtools_Guest_ShellOutput>
    private var busy = false
    private var queue: [CheckedContinuation<Void, Never>] = []

    init(_ response: RPCWriter<Vmtools_Guest_ShellOutput>) { self.response = response }

    func write(_ output: Vmtools_Guest_ShellOutput) async throws {
        if busy {
            await withCheckedContinuation { queue.append($0) }
        }
        busy = true
        defer {
            if queue.isEmpty { busy = false } else { queue.removeFirst().resume() }
        }
        try await response.write(output)
    }
}
