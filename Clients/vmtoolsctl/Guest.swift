import ArgumentParser
import Foundation
import GRPCCore
import GuestClient
import GuestProtocol

/// `vmtoolsctl guest ...`: maitred's calls one by one, for VMs started by hand and for scripts.
struct Guest: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Talk to a guest's agent (maitred) directly.",
        subcommands: [
            Ready.self, KernelVersion.self, SetTime.self, ConfigureNetwork.self, Mount.self, Mount9P.self,
            Shutdown.self,
        ])

    /// Runs one Maitred call.
    static func call<T: Sendable>(
        _ endpoint: EndpointOptions,
        _ body: @escaping @Sendable (Vmtools_Guest_Maitred.Client<HTTP2Transport>) async throws -> T
    ) async throws -> T {
        let target = try endpoint.endpoint(defaultPort: GuestEndpoint.maitredPort)
        return try await guestCall {
            try await target.withClient { client in
                try await body(Vmtools_Guest_Maitred.Client(wrapping: client))
            }
        }
    }
}

extension Guest {
    struct Ready: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Wait for the guest's VmReady call (start this before or right after vmm).",
            discussion: "Listens on <vsock socket>_7777, where vmm forwards the guest's calls to host port 7777.")

        @Option(name: .customLong("vsock"), help: "The VM's vsock socket (vmm --vsock).")
        var vsockSocket: String?

        @Option(help: "Listen on this Unix socket instead, or on vsock:PORT (a kernel vsock: vhost-vsock).")
        var listen: String?

        @Option(help: "Seconds to wait.")
        var timeout = 60

        mutating func run() async throws {
            let ready: Vmtools_Guest_VmReadyRequest
            if let listen, listen.hasPrefix("vsock:") {
                guard let port = UInt32(listen.dropFirst(6)) else {
                    throw ValidationError("\(listen) is not vsock:PORT")
                }
                ready = try await guestCall { [timeout] in
                    try await StartupListener.waitForReady(vsockPort: port, timeout: .seconds(timeout))
                }
            } else {
                guard let path = listen ?? vsockSocket.map({ "\($0)_\(GuestEndpoint.startupListenerPort)" }) else {
                    throw ValidationError("name --vsock PATH or --listen PATH")
                }
                ready = try await guestCall { [timeout] in
                    try await StartupListener.waitForReady(on: path, timeout: .seconds(timeout))
                }
            }
            print("ready: kernel \(ready.kernelRelease), maitred up \(ready.startupMillis) ms after its start")
        }
    }

    struct KernelVersion: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the guest kernel's uname.")
        @OptionGroup var endpoint: EndpointOptions

        mutating func run() async throws {
            let version = try await Guest.call(endpoint) { try await $0.getKernelVersion(Vmtools_Guest_Empty()) }
            print("\(version.sysname) \(version.release) \(version.version) \(version.machine)")
        }
    }

    struct SetTime: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Set the guest's clock (default: to this host's).")
        @OptionGroup var endpoint: EndpointOptions
        @Option(help: "Seconds since the epoch.")
        var seconds: Int64?

        mutating func run() async throws {
            var request = Vmtools_Guest_SetTimeRequest()
            let now = Date().timeIntervalSince1970
            request.seconds = seconds ?? Int64(now)
            request.nanos = seconds == nil ? Int32((now - now.rounded(.down)) * 1e9) : 0
            _ = try await Guest.call(endpoint) { [request] in try await $0.setTime(request) }
        }
    }

    struct ConfigureNetwork: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Give a guest interface an IPv4 address, route and DNS.")
        @OptionGroup var endpoint: EndpointOptions
        @Option var interface = "eth0"
        @Option var address: String
        @Option var netmask: String
        @Option var gateway: String?
        @Option(help: "DNS server (repeatable).") var dns: [String] = []
        @Option var mtu: UInt32 = 0

        mutating func run() async throws {
            var request = Vmtools_Guest_NetworkConfig()
            request.interface = interface
            request.address = address
            request.netmask = netmask
            request.gateway = gateway ?? ""
            request.dnsServers = dns
            request.mtu = mtu
            _ = try await Guest.call(endpoint) { [request] in try await $0.configureNetwork(request) }
        }
    }

    struct Mount: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "mount(2) in the guest.")
        @OptionGroup var endpoint: EndpointOptions
        @Argument var source: String
        @Argument var target: String
        @Option(name: .customLong("type")) var fstype: String
        @Option var options = ""
        @Flag(help: "Create the target directory first.") var createTarget = false
        @Flag var readOnly = false

        mutating func run() async throws {
            var request = Vmtools_Guest_MountRequest()
            request.source = source
            request.target = target
            request.fstype = fstype
            request.options = options
            request.createTarget = createTarget
            request.flags = readOnly ? 1 : 0  // MS_RDONLY
            _ = try await Guest.call(endpoint) { [request] in try await $0.mount(request) }
        }
    }

    struct Mount9P: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "mount-9p", abstract: "Mount a host 9P server (on a host vsock port) in the guest.")
        @OptionGroup var endpoint: EndpointOptions
        @Argument(help: "Host vsock port of the 9P server.") var serverPort: UInt32
        @Argument var target: String
        @Flag var readOnly = false

        mutating func run() async throws {
            var request = Vmtools_Guest_Mount9PRequest()
            request.port = serverPort
            request.target = target
            request.readOnly = readOnly
            _ = try await Guest.call(endpoint) { [request] in try await $0.mount9P(request) }
        }
    }

    struct Shutdown: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Power the guest off cleanly (vmm then exits 0).")
        @OptionGroup var endpoint: EndpointOptions

        mutating func run() async throws {
            _ = try await Guest.call(endpoint) { try await $0.shutdown(Vmtools_Guest_Empty()) }
        }
    }
}
