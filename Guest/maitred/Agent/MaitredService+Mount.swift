import CGuestSystem
import GRPCCore
import GuestProtocol

#if canImport(Glibc)
    import Glibc
#endif

extension MaitredService {
    /// The host's vsock context ID, where seneschal's 9P servers listen.
    static let hostCID: UInt32 = 2

    public func mount(request: Vmtools_Guest_MountRequest, context: ServerContext) async throws -> Vmtools_Guest_Empty {
        guard request.target.hasPrefix("/") else {
            throw AgentError.invalid("mount target \"\(request.target)\" is not an absolute path")
        }
        guard !request.fstype.isEmpty else {
            throw AgentError.invalid("mount of \(request.target) names no file-system type")
        }
        if request.createTarget { try Self.makeDirectories(request.target) }
        let source = request.source.isEmpty ? "none" : request.source
        guard Glibc.mount(source, request.target, request.fstype, UInt(request.flags), request.options) == 0 else {
            throw AgentError.system("mount \(source) on \(request.target) (\(request.fstype))", errno: errno)
        }
        return Vmtools_Guest_Empty()
    }

    public func mount9P(request: Vmtools_Guest_Mount9PRequest, context: ServerContext) async throws
        -> Vmtools_Guest_Empty
    {
        guard request.target.hasPrefix("/") else {
            throw AgentError.invalid("9P mount target \"\(request.target)\" is not an absolute path")
        }
        guard request.port != 0 else { throw AgentError.invalid("9P mount of \(request.target) names no vsock port") }
        try Self.makeDirectories(request.target)
        let fd = cgs_vsock_connect(Self.hostCID, request.port)
        guard fd >= 0 else {
            throw AgentError.system("connecting to the host's 9P server on vsock port \(request.port)", errno: -fd)
        }
        // The kernel holds its own reference to the socket once mounted.
        defer { close(fd) }
        var options = "trans=fd,rfdno=\(fd),wfdno=\(fd),version=9p2000.L,cache=none,access=any,msize=262144"
        if !request.options.isEmpty { options += ",\(request.options)" }
        let flags = request.readOnly ? UInt(MS_RDONLY) : 0
        guard Glibc.mount("vmtools", request.target, "9p", flags, options) == 0 else {
            throw AgentError.system("mount 9P (vsock port \(request.port)) on \(request.target)", errno: errno)
        }
        return Vmtools_Guest_Empty()
    }

    /// mkdir -p.
    static func makeDirectories(_ path: String) throws(RPCError) {
        var current = ""
        for component in path.split(separator: "/") {
            current += "/\(component)"
            if mkdir(current, 0o755) != 0 && errno != EEXIST {
                throw AgentError.system("creating directory \(current)", errno: errno)
            }
        }
    }
}
