import EventLoop
import Foundation
import GuestClient
import GuestProtocol
import Processes

#if canImport(Glibc)
    import Glibc
#endif

// MARK: - StopVm

extension VMManager {
    /// Stops a VM, each step given ``ConciergeConfiguration/stopStepSeconds``: maitred's
    /// Shutdown (a clean power-off), then vmm's control socket (`stop`), then SIGTERM, then
    /// SIGKILL. Returns once everything the VM held is free.
    public func stop(_ name: String, reason: StopReason = .requested) async throws(ConciergeError) {
        guard var vm = running[name] else { throw .init(.notFound, "no VM named \(name)") }
        let process = vm.process
        if vm.stopReason == nil {
            vm.stopReason = reason
            vm.info.state = "stopping"
            running[name] = vm
            events(.stopping(name: name))
            let paths = paths(name)
            let step = config.stopStepSeconds
            var termination = await Self.attempt(seconds: step, process) {
                try await GuestEndpoint.socket(paths.maitred).withClient { client in
                    _ = try await Vmtools_Guest_Maitred.Client(wrapping: client).shutdown(Vmtools_Guest_Empty())
                }
            }
            if termination == nil {
                log("VM \(name): no power-off after maitred's Shutdown; asking vmm to stop")
                termination = await Self.attempt(seconds: step, process) { try Self.control(paths.control, "stop") }
            }
            if termination == nil {
                log("VM \(name): vmm did not stop; SIGTERM")
                process.signal(SIGTERM)
                termination = await process.terminated(within: step)
            }
            if termination == nil {
                log("VM \(name): vmm ignored SIGTERM; SIGKILL")
                process.signal(SIGKILL)
            }
        }
        // Whoever gets here first (this call, another StopVm, the watcher) frees the VM.
        finish(name, process: process, await process.terminated())
    }

    /// Stops every VM at once (StopAllVms, or concierge shutting down).
    public func stopAll(reason: StopReason = .requested) async {
        await withTaskGroup(of: Void.self) { group in
            for name in running.keys {
                group.addTask { try? await self.stop(name, reason: reason) }
            }
        }
    }

    /// Runs `request` and waits for the process to end, `seconds` at most in all; nil if it
    /// still runs then. A request that fails is logged, and the wait goes on.
    private static func attempt(
        seconds: Double, _ process: ChildProcess, _ request: @escaping @Sendable () async throws -> Void
    ) async -> ChildProcess.Termination? {
        let asked = Task { try await request() }
        defer { asked.cancel() }
        return await process.terminated(within: seconds)
    }

    /// Sends one command line to vmm's control socket and returns its JSON reply.
    @discardableResult
    static func control(_ path: String, _ command: String) throws -> String {
        let fd = try UnixSocket.connect(to: path)
        defer { close(fd) }
        let line = Array("\(command)\n".utf8)
        guard line.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == line.count else {
            throw ConciergeError.failed("writing to \(path): \(String(cString: strerror(errno)))")
        }
        var reply: [UInt8] = []
        var byte: UInt8 = 0
        while reply.count < 4096, read(fd, &byte, 1) == 1, byte != UInt8(ascii: "\n") { reply.append(byte) }
        return String(decoding: reply, as: UTF8.self)
    }
}

extension VMManager {
    /// Ends the starts under way (concierge is going away): their vmm is killed, so that each
    /// StartVm fails and frees what it held instead of leaving a VM that nobody recorded.
    public func abortStarts() async {
        for (name, process) in startingProcesses {
            log("VM \(name) was still starting: stopping its vmm")
            process.signal(SIGKILL)
            _ = await process.terminated(within: config.stopStepSeconds)
        }
    }
}
