import CGuestSystem
import CLinux
import GRPCCore
import GuestProtocol

#if canImport(Glibc)
    import Glibc
#endif

extension MaitredService {
    public func configureNetwork(request: Vmtools_Guest_NetworkConfig, context: ServerContext) async throws
        -> Vmtools_Guest_Empty
    {
        let interface = request.interface.isEmpty ? "eth0" : request.interface
        let address = try Self.ipv4(request.address, "address")
        let netmask = try Self.ipv4(request.netmask, "netmask")
        guard Self.isContiguous(netmask: netmask) else {
            throw AgentError.invalid("netmask \(request.netmask) is not contiguous")
        }
        let gateway = request.gateway.isEmpty ? nil : try Self.ipv4(request.gateway, "gateway")
        guard clinux_interface_exists(interface) != 0 else {
            throw RPCError(code: .notFound, message: "no network interface named \(interface)")
        }
        try Self.check(
            clinux_interface_set_ipv4(interface, address, netmask),
            "setting \(request.address)/\(request.netmask) on \(interface)")
        if request.mtu != 0 {
            try Self.check(
                clinux_interface_set_mtu(interface, Int32(clamping: request.mtu)),
                "setting MTU \(request.mtu) on \(interface)")
        }
        try Self.check(clinux_interface_set_up(interface, 1), "bringing \(interface) up")
        if let gateway {
            let result = clinux_route_add_default(gateway)
            // A second ConfigureNetwork with the same gateway finds the route in place.
            if result != -EEXIST { try Self.check(result, "adding the default route via \(request.gateway)") }
        }
        if !request.dnsServers.isEmpty {
            try writeResolvConf(servers: request.dnsServers, search: request.searchDomains)
        }
        return Vmtools_Guest_Empty()
    }

    private func writeResolvConf(servers: [String], search: [String]) throws(RPCError) {
        for server in servers { _ = try Self.ipv4(server, "DNS server") }
        var text = servers.map { "nameserver \($0)\n" }.joined()
        if !search.isEmpty { text += "search \(search.joined(separator: " "))\n" }
        let directory = root == "/" ? "/etc" : "\(root)/etc"
        mkdir(directory, 0o755)
        try FileText.write(text, to: "\(directory)/resolv.conf")
    }

    /// Parses a dotted quad into network byte order.
    static func ipv4(_ text: String, _ what: String) throws(RPCError) -> UInt32 {
        var address = in_addr()
        guard inet_pton(AF_INET, text, &address) == 1 else {
            throw AgentError.invalid("\(what) \"\(text)\" is not an IPv4 address")
        }
        return address.s_addr
    }

    static func isContiguous(netmask: UInt32) -> Bool {
        let host = UInt32(bigEndian: netmask)
        return (~host) & (~host &+ 1) == 0
    }

    static func check(_ result: Int32, _ what: String) throws(RPCError) {
        if result < 0 { throw AgentError.system(what, errno: -result) }
    }
}
