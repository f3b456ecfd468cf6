import Foundation
import GRPCCore
import GuestClient
import GuestProtocol

#if canImport(Glibc)
    import Glibc
#endif

// MARK: - mojo-proxy

extension VMManager {
    /// The guest's end of mojo-proxy, as the guest image installs it.
    static let guestMojoProxy = "/usr/bin/mojo-proxy"

    /// Joins the VM's mojo channels: the host's proxy (its unit) first, listening where vmm
    /// sends the guest's link, then the guest's, started through maitred, which returns once
    /// it is linked and listens on every channel's guest socket. Throws what failed.
    func startMojoProxy(_ options: VMOptions, paths: VMPaths) async throws(ConciergeError) {
        guard !options.mojoChannels.isEmpty else { return }
        guard let mojoProxies else { throw .failed("mojo channels need systemd (vmtools-mojo-proxy@.service)") }
        let name = options.name
        let words = options.mojoChannels.map { "--channel \($0.hostArgument)" }.joined(separator: " ")
        do {
            try "MOJO_CHANNELS=\(words)\n".write(toFile: paths.mojoProxyEnvironment, atomically: true, encoding: .utf8)
        } catch {
            throw .failed("writing \(paths.mojoProxyEnvironment): \(error)")
        }
        unlink(paths.mojoProxyLink)
        try await mojoProxies.start(vm: name)
        guard await Self.waitForFile(paths.mojoProxyLink, seconds: 15) else {
            throw .failed(
                "the host's mojo-proxy did not listen at \(paths.mojoProxyLink) (journalctl -u \(SystemdMojoProxies.unit(of: name)))"
            )
        }
        var request = Vmtools_Guest_LaunchProcessRequest()
        request.argv =
            [Self.guestMojoProxy, "guest", "--background"]
            + options.mojoChannels.flatMap { ["--channel", $0.guestArgument] }
        request.wait = true
        let reply: Vmtools_Guest_LaunchProcessResponse
        do {
            reply = try await GuestEndpoint.socket(paths.maitred).withClient { client in
                try await Vmtools_Guest_Maitred.Client(wrapping: client).launchProcess(request)
            }
        } catch let error as RPCError {
            throw .failed("starting the guest's mojo-proxy: \(error.message)")
        } catch {
            throw .failed("starting the guest's mojo-proxy: \(error)")
        }
        guard case .exitCode(0)? = reply.termination else {
            let said = String(decoding: reply.stderr, as: UTF8.self).split(separator: "\n").last.map(String.init) ?? ""
            throw .failed("the guest's mojo-proxy did not start: \(said)")
        }
        log("VM \(name): mojo-proxy channels \(options.mojoChannels.map(\.guestArgument).joined(separator: " "))")
    }

    /// Stops the VM's host-side proxy in the background (the VM is gone or never got going).
    func stopMojoProxy(_ name: String) {
        guard let mojoProxies else { return }
        Task { await mojoProxies.stop(vm: name) }
    }
}
