import EventLoop
import GRPCCore
import GuestClient
import GuestProtocol

#if canImport(Glibc)
    import Glibc
#endif

// MARK: - The shared folder

extension VMManager {
    /// Asks seneschal for the VM's 9P server, listening where vmm sends the guest's connections
    /// to vsock port 16384 and serving as the VM's owner. A VM without one still starts (it
    /// has no /mnt/shared); why is logged.
    func startShareServer(_ options: VMOptions, paths: VMPaths) async -> UInt32? {
        guard let shareServers else { return nil }
        let listener: Int32
        do { listener = try UnixSocket.listen(at: paths.shareServer, mode: 0o600) } catch {
            log("VM \(options.name): no shared folder: cannot listen at \(paths.shareServer): \(error)")
            return nil
        }
        defer { close(listener) }
        do {
            return try await shareServers.startServer(listener: listener, uid: options.owner)
        } catch {
            log("VM \(options.name): no shared folder: \(error)")
            unlink(paths.shareServer)
            return nil
        }
    }

    /// maitred mounts the VM's 9P server at /mnt/shared (trans=fd over vsock port 16384).
    func mountSharedFolder(_ name: String, paths: VMPaths) async -> Bool {
        var request = Vmtools_Guest_Mount9PRequest()
        request.port = VMPaths.sharePort
        request.target = VMPaths.sharedFolder
        do {
            try await GuestEndpoint.socket(paths.maitred).withClient { client in
                _ = try await Vmtools_Guest_Maitred.Client(wrapping: client).mount9P(request)
            }
            return true
        } catch let error as RPCError {
            log("VM \(name): no shared folder: mounting it in the guest failed: \(error.message)")
        } catch {
            log("VM \(name): no shared folder: mounting it in the guest failed: \(error)")
        }
        return false
    }

    /// Stops a VM's 9P server in the background (the VM is gone or never got it).
    func stopShareServer(_ handle: UInt32) {
        guard let shareServers else { return }
        Task { await shareServers.stopServer(handle) }
    }
}
