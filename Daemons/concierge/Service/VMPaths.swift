/// One VM's runtime files, in `<runtime>/<vm>/`.
public struct VMPaths: Sendable, Equatable {
    public let folder: String

    public init(folder: String) { self.folder = folder }

    /// The vsock socket (Firecracker's `CONNECT <port>` convention) and, beside it, what
    /// vmm makes of it: `vsock.sock_7777` is where the guest's VmReady arrives.
    public var vsock: String { "\(folder)/vsock.sock" }
    public var startupListener: String { "\(vsock)_7777" }
    /// Plain per-port sockets for gRPC clients (vmm `--vsock-listen`).
    public var maitred: String { "\(folder)/maitred.sock" }
    public var shell: String { "\(folder)/shell.sock" }
    public var control: String { "\(folder)/control.sock" }
    public var serialLog: String { "\(folder)/serial.log" }
    public var vmmLog: String { "\(folder)/vmm.log" }

    /// The guest's connections to host vsock port 16384 (seneschal's first) arrive here: the
    /// listener of the VM's 9P server, which maitred mounts at ``sharedFolder``.
    public static let sharePort: UInt32 = 16384
    public var shareServer: String { "\(vsock)_\(Self.sharePort)" }
    public static let sharedFolder = "/mnt/shared"

    /// The guest's mojo-proxy links to host vsock port 9900: the host's proxy listens here.
    public static let mojoPort: UInt32 = 9900
    public var mojoProxyLink: String { "\(vsock)_\(Self.mojoPort)" }
    /// The channels of the host's proxy (`vmtools-mojo-proxy@.service` reads MOJO_CHANNELS).
    public var mojoProxyEnvironment: String { "\(folder)/mojo-proxy.env" }
}
