import Foundation
import GRPCCore
import GuestProtocol

#if canImport(Glibc)
    import Glibc
#endif

extension MaitredService {
    /// At most this much of each of stdout and stderr comes back from a waited process (both fit
    /// in gRPC's default 4 MiB message limit).
    static let outputLimit = 1 << 20

    public func launchProcess(
        request: Vmtools_Guest_LaunchProcessRequest, context: ServerContext
    ) async throws -> Vmtools_Guest_LaunchProcessResponse {
        var spawn = SpawnRequest(
            argv: request.argv,
            environment: request.env.isEmpty ? ProcessSpawner.defaultEnvironment : request.env,
            workingDirectory: request.workingDirectory)
        var response = Vmtools_Guest_LaunchProcessResponse()

        guard request.wait else {
            // Detached: /dev/null for its standard descriptors, its status dropped when it ends.
            let null = try Descriptors.openNull()
            defer { close(null) }
            (spawn.stdin, spawn.stdout, spawn.stderr) = (null, null, null)
            let pid = try reaper.spawn(spawn)
            reaper.detach(pid)
            response.pid = UInt32(pid)
            return response
        }

        let input = try Pipe()
        let output = try Pipe()
        let errors = try Pipe()
        (spawn.stdin, spawn.stdout, spawn.stderr) = (input.readEnd, output.writeEnd, errors.writeEnd)
        let pid: pid_t
        do {
            pid = try reaper.spawn(spawn)
        } catch {
            [input, output, errors].forEach { pipe in
                close(pipe.readEnd)
                close(pipe.writeEnd)
            }
            throw error
        }
        [input.readEnd, output.writeEnd, errors.writeEnd].forEach { close($0) }
        response.pid = UInt32(pid)

        let (termination, stdout, stderr) = await Self.run(
            pid, reaper: reaper, stdin: ([UInt8](request.stdin), input.writeEnd), stdout: output.readEnd,
            stderr: errors.readEnd)

        switch termination {
        case .exited(let code): response.exitCode = code
        case .signaled(let signal): response.signal = signal
        }
        response.stdout = Data(stdout.bytes)
        response.stderr = Data(stderr.bytes)
        response.outputTruncated = stdout.truncated || stderr.truncated
        return response
    }

    private enum Progress: Sendable {
        case output(Int, BoundedOutput)
        case ended(Termination)
        case fed
        case drainDeadline
    }

    /// Feeds stdin and collects stdout and stderr (all at once: a process that fills one pipe
    /// must not stall the other) until the process ends and its output does; a background child
    /// that keeps the pipes open gets ``ShellService/drainTime``, then its output is cut off.
    private static func run(
        _ pid: pid_t, reaper: ProcessReaper, stdin: ([UInt8], Int32), stdout: Int32, stderr: Int32
    ) async -> (Termination, BoundedOutput, BoundedOutput) {
        await withTaskGroup(of: Progress.self) { group in
            group.addTask { .output(1, await collect(stdout)) }
            group.addTask { .output(2, await collect(stderr)) }
            group.addTask {
                await feed(stdin.1, stdin.0)
                return .fed
            }
            group.addTask { .ended(await reaper.wait(for: pid)) }
            var termination = Termination.exited(0)
            var outputs: [Int: BoundedOutput] = [:]
            while let progress = await group.next() {
                switch progress {
                case .output(let fd, let output):
                    outputs[fd] = output
                    if outputs.count == 2 { group.cancelAll() }  // done, or a leftover deadline
                case .ended(let ended):
                    termination = ended
                    group.addTask {
                        try? await Task.sleep(for: ShellService.drainTime)
                        return .drainDeadline
                    }
                case .drainDeadline: group.cancelAll()  // collectors return what they have
                case .fed: break
                }
            }
            let empty = BoundedOutput(limit: outputLimit)
            return (termination, outputs[1] ?? empty, outputs[2] ?? empty)
        }
    }

    /// Writes the request's stdin; a process that exits without reading it is not an error.
    private static func feed(_ fd: Int32, _ bytes: [UInt8]) async {
        try? await Descriptors.writeAll(fd, bytes)
    }

    private static func collect(_ fd: Int32) async -> BoundedOutput {
        var output = BoundedOutput(limit: outputLimit)
        try? await Descriptors.readAll(fd) { output.append($0) }
        return output
    }
}
