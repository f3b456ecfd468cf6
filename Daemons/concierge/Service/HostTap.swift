import CLinux

#if canImport(Glibc)
    import Glibc
#endif

/// The host's end of a VM's network: a TAP interface with the host address of the VM's /30,
/// up, and its descriptor to hand to `vmm --tap-fd`.
///
/// The TAP is not persistent: it goes away when the last descriptor on it closes, so a VMM that
/// dies takes its TAP along and nothing leaks even if concierge itself is gone.
public final class HostTap: Sendable {
    /// What vmm's virtio-net needs (TapDevice.requiredFlags in vmm).
    static let flags = Int32(IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)

    public let name: String
    /// Close-on-exec; `posix_spawn`'s dup2 gives the VMM a copy without it.
    public let fd: Int32

    /// Creates (or attaches to) TAP `name`, gives it `subnet`'s host address and brings it up.
    /// Needs CAP_NET_ADMIN.
    public init(name: String, subnet: IPv4Subnet) throws(HostNetworkError) {
        guard !name.isEmpty, name.utf8.count < Int(IFNAMSIZ), name.allSatisfy({ $0.isLetter || $0.isNumber }) else {
            throw .invalid("TAP name '\(name)' must be 1–15 letters and digits")
        }
        let fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw .system("opening /dev/net/tun for \(name)", errno) }
        var chosen = [CChar](repeating: 0, count: Int(IFNAMSIZ))
        guard clinux_tun_set_iff(fd, name, Self.flags, &chosen) == 0 else {
            let code = errno
            close(fd)
            throw .system("creating TAP \(name)", code)
        }
        self.fd = fd
        self.name = name
        do {
            try Self.check(
                clinux_interface_set_ipv4(name, subnet.host.value.bigEndian, subnet.netmask.value.bigEndian),
                "giving \(name) the address \(subnet.host)/\(IPv4Subnet.prefixLength)")
            try Self.check(clinux_interface_set_up(name, 1), "bringing \(name) up")
        } catch {
            close(fd)
            throw error
        }
    }

    deinit { close(fd) }

    private static func check(_ result: Int32, _ what: String) throws(HostNetworkError) {
        if result < 0 { throw .system(what, -result) }
    }
}

/// Why the host side of a VM's network could not be set up.
public enum HostNetworkError: Error, Equatable, CustomStringConvertible {
    case invalid(String)
    case system(String, Int32)

    public var description: String {
        switch self {
        case .invalid(let why): return why
        case .system(let what, let code): return "\(what): \(String(cString: strerror(code)))"
        }
    }
}
