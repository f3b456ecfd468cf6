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

        let stdin = [UInt8](request.stdin)
        async let fed: Void = Self.feed(input.writeEnd, stdin)
        async let out = Self.collect(output.readEnd)
        async let err = Self.collect(errors.readEnd)
        let termination = await reaper.wait(for: pid)
        let (stdout, stderr) = await (out, err)
        await fed

        switch termination {
        case .exited(let code): response.exitCode = code
        case .signaled(let signal): response.signal = signal
        }
        response.stdout = Data(stdout.bytes)
        response.stderr = Data(stderr.bytes)
        response.outputTruncated = stdout.truncated || stderr.truncated
        return response
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
