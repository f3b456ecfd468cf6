import GRPCCore
import GRPCNIOTransportHTTP2Posix
import GuestClient
import GuestProtocol

// MARK: - Applications, through the container's garcon

extension CiceroneManager {
    /// How long a call to garcon may take.
    static let garconDeadline: Duration = .seconds(10)

    /// LaunchApplication: a desktop file ID (with files or URLs) or a command line; the PIDs
    /// garcon started, as the container sees them.
    public func launch(
        _ key: ContainerKey, desktopFileID: String, argv: [String], files: [String], locale: String
    ) async throws(CiceroneError) -> [UInt32] {
        guard desktopFileID.isEmpty != argv.isEmpty else {
            throw .invalid("LaunchApplication needs a desktop_file_id or an argv, not both")
        }
        var request = Vmtools_Container_LaunchApplicationRequest()
        request.desktopFileID = desktopFileID
        request.argv = argv
        request.files = files
        request.locale = locale
        let launch = request
        return try await withGarcon(key, "launching \(desktopFileID.isEmpty ? argv[0] : desktopFileID)") {
            try await $0.launchApplication(launch, options: Self.callOptions).pids
        }
    }

    /// ListApplications: what the container's .desktop files say, as garcon reads them now.
    public func applications(_ key: ContainerKey) async throws(CiceroneError) -> [Vmtools_Container_Application] {
        try await withGarcon(key, "listing applications") {
            try await $0.listApplications(Vmtools_Container_Empty(), options: Self.callOptions).applications
        }
    }

    /// GetApplicationIcon: the icon's bytes and format ("png" or "svg").
    public func icon(_ key: ContainerKey, desktopFileID: String, size: UInt32, scale: UInt32)
        async throws(CiceroneError)
        -> (content: [UInt8], format: String)
    {
        guard !desktopFileID.isEmpty else { throw .invalid("GetApplicationIcon needs a desktop file ID") }
        guard (1...1024).contains(size), scale <= 8 else {
            throw .invalid("size must be 1 to 1024 pixels and scale at most 8, got \(size) and \(scale)")
        }
        var request = Vmtools_Container_IconRequest()
        request.desktopFileIds = [desktopFileID]
        request.size = size
        request.scale = max(scale, 1)
        let query = request
        let icons = try await withGarcon(key, "the icon of \(desktopFileID)") {
            try await $0.getIcon(query, options: Self.callOptions).icons
        }
        guard let icon = icons.first(where: { $0.desktopFileID == desktopFileID }) else {
            throw .init(.notFound, "\(key) has no icon for \(desktopFileID)")
        }
        return (Array(icon.content), icon.format == Vmtools_Container_Icon.Format.svg ? "svg" : "png")
    }

    static var callOptions: CallOptions { deadline(garconDeadline) }

    /// Runs `body` with a client of the container's garcon (through the VM's vsock socket, on
    /// the port garcon reported). A container that is not ready is NotFound.
    func withGarcon<Result: Sendable>(
        _ key: ContainerKey, _ what: String,
        _ body: @Sendable (Vmtools_Container_Garcon.Client<HTTP2ClientTransport.Posix>) async throws -> Result
    ) async throws(CiceroneError) -> Result {
        guard let known = vms[key.vm] else { throw .init(.notFound, "no VM named \(key.vm) is running") }
        guard let container = running[key], container.ready else {
            throw .init(.notFound, "\(key) is not running")
        }
        return try await Self.guestCall(
            .vsock(socket: known.vm.vsockSocket, port: container.garconPort), "\(key): \(what)", in: "garcon"
        ) { try await body(Vmtools_Container_Garcon.Client(wrapping: $0)) }
    }
}
