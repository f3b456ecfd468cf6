import CLinux

#if canImport(Glibc)
    import Glibc
#endif

/// A Linux TAP interface set up for virtio-net: each read or write on ``fd`` is one Ethernet
/// frame led by a 12-byte `virtio_net_hdr_v1` (IFF_VNET_HDR, no packet-information prefix), and
/// the descriptor is non-blocking and close-on-exec.
///
/// The object owns the descriptor and closes it when it goes away; a TAP that is not persistent
/// (`ip tuntap add` makes one persistent) disappears with it.
public final class TapDevice: NetBackend {
    /// `virtio_net_hdr_v1`'s size, num_buffers included, as virtio 1.x always uses it.
    public static let vnetHeaderSize: Int32 = 12
    /// The TUNSETOFFLOAD request number (for the VMM's seccomp policy).
    public static let setOffloadRequest = UInt64(CLINUX_TUNSETOFFLOAD)
    /// What a TAP for virtio-net must have been attached with.
    static let requiredFlags = Int32(IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)

    public let fd: Int32
    /// The interface's name, as `ip link` shows it.
    public let name: String

    /// Opens `/dev/net/tun` and attaches to the TAP interface `name`, creating it (which needs
    /// CAP_NET_ADMIN) when it does not exist.
    public init(name: String) throws(TapError) {
        guard !name.isEmpty, name.utf8.count < Int(IFNAMSIZ), !name.contains("/"), !name.contains(" ") else {
            throw .invalidName(name)
        }
        let fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw .system("open /dev/net/tun", tap: name, errno: errno) }
        var chosen = [CChar](repeating: 0, count: Int(IFNAMSIZ))
        guard clinux_tun_set_iff(fd, name, Self.requiredFlags, &chosen) == 0 else {
            let code = errno
            close(fd)
            throw .system("TUNSETIFF", tap: name, errno: code)
        }
        self.fd = fd
        self.name = String(decoding: chosen.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        try configure()
    }

    /// Takes over `fd`, an inherited descriptor already attached to a TAP (by a privileged
    /// manager, say) with IFF_TAP, IFF_NO_PI and IFF_VNET_HDR; makes it non-blocking.
    public init(adopting fd: Int32) throws(TapError) {
        var flags: Int32 = 0
        var attached = [CChar](repeating: 0, count: Int(IFNAMSIZ))
        guard clinux_tun_get_iff(fd, &flags, &attached) == 0 else {
            let code = errno
            throw .unsuitable(
                fd: fd,
                code == EBADF
                    ? "it is not open"
                    : "it is not a TUN/TAP descriptor attached to an interface (TUNGETIFF: \(String(cString: strerror(code))))"
            )
        }
        let name = String(decoding: attached.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard flags & Int32(IFF_TAP) != 0 else { throw .unsuitable(fd: fd, "\(name) is a TUN (IP) device, not a TAP") }
        guard flags & Int32(IFF_VNET_HDR) != 0 else {
            throw .unsuitable(fd: fd, "TAP \(name) was opened without IFF_VNET_HDR")
        }
        guard flags & Int32(IFF_NO_PI) != 0 else {
            throw .unsuitable(fd: fd, "TAP \(name) was opened without IFF_NO_PI (its frames carry a 4-byte prefix)")
        }
        let status = fcntl(fd, F_GETFL)
        guard status >= 0, fcntl(fd, F_SETFL, status | O_NONBLOCK) == 0, fcntl(fd, F_SETFD, FD_CLOEXEC) == 0 else {
            throw .system("fcntl (non-blocking, close-on-exec)", tap: name, errno: errno)
        }
        self.fd = fd
        self.name = name
        try configure()
    }

    deinit { close(fd) }

    /// The 12-byte header, and no offloads until a guest accepts them.
    private func configure() throws(TapError) {
        guard clinux_tun_set_vnet_hdr_size(fd, Self.vnetHeaderSize) == 0 else {
            throw .system("TUNSETVNETHDRSZ", tap: name, errno: errno)
        }
        try setOffload([])
    }

    public func setOffload(_ offload: TapOffload) throws(TapError) {
        guard clinux_tun_set_offload(fd, offload.rawValue) == 0 else {
            throw .system("TUNSETOFFLOAD 0x\(String(offload.rawValue, radix: 16))", tap: name, errno: errno)
        }
    }
}

/// Why a TAP could not be opened, adopted or configured.
public enum TapError: Error, Equatable, CustomStringConvertible {
    /// A call on the TAP failed: which call, which interface, errno.
    case system(String, tap: String, errno: Int32)
    /// Not a usable interface name (empty, 16 bytes or more, a slash or a space).
    case invalidName(String)
    /// An inherited descriptor that is no TAP set up for virtio-net; the text says why.
    case unsuitable(fd: Int32, String)

    public var description: String {
        switch self {
        case .system(let call, let tap, let code):
            let hint =
                code == EPERM && call == "TUNSETIFF"
                ? " (creating a TAP needs CAP_NET_ADMIN; an unprivileged vmm needs a TAP made for its user, or --tap-fd)"
                : ""
            return "TAP \(tap): \(call) failed: \(String(cString: strerror(code)))\(hint)"
        case .invalidName(let name):
            return "'\(name)' is not a network interface name (1 to \(IFNAMSIZ - 1) bytes, no '/' or space)"
        case .unsuitable(let fd, let why): return "descriptor \(fd) cannot serve as a TAP for virtio-net: \(why)"
        }
    }
}
