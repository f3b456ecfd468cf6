import GRPCCore
import GuestProtocol

#if canImport(Glibc)
    import Glibc
#endif

extension MaitredService {
    public func setTime(request: Vmtools_Guest_SetTimeRequest, context: ServerContext) async throws
        -> Vmtools_Guest_Empty
    {
        guard request.seconds > 0, (0..<1_000_000_000).contains(request.nanos) else {
            throw AgentError.invalid("time \(request.seconds) s + \(request.nanos) ns is not a valid wall-clock time")
        }
        var time = timespec(tv_sec: Int(request.seconds), tv_nsec: Int(request.nanos))
        guard clock_settime(CLOCK_REALTIME, &time) == 0 else { throw AgentError.system("clock_settime", errno: errno) }
        return Vmtools_Guest_Empty()
    }

    public func getKernelVersion(request: Vmtools_Guest_Empty, context: ServerContext) async throws
        -> Vmtools_Guest_KernelVersion
    {
        try Self.kernelVersion()
    }

    static func kernelVersion() throws(RPCError) -> Vmtools_Guest_KernelVersion {
        var name = utsname()
        guard uname(&name) == 0 else { throw AgentError.system("uname", errno: errno) }
        func text<T>(_ field: T) -> String {
            withUnsafeBytes(of: field) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        }
        var version = Vmtools_Guest_KernelVersion()
        version.sysname = text(name.sysname)
        version.release = text(name.release)
        version.version = text(name.version)
        version.machine = text(name.machine)
        return version
    }

    public func shutdown(request: Vmtools_Guest_Empty, context: ServerContext) async throws -> Vmtools_Guest_Empty {
        let action = shutdownAction
        // Answer first: powering off ends the connection the answer would travel on.
        Task.detached {
            try? await Task.sleep(for: .milliseconds(100))
            switch action {
            case .powerOff: PowerOff.run(reason: "the host asked for it (Shutdown)")
            case .call(let body): body()
            }
        }
        return Vmtools_Guest_Empty()
    }
}
