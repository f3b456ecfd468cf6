import GRPCCore
import GRPCNIOTransportHTTP2Posix
import GuestProtocol
import GuestTransport

/// Tells the host's startup listener (vsock CID 2, port 7777) that maitred is serving, so the
/// host waits for a call instead of polling.
enum StartupNotifier {
    /// Calls VmReady, retrying for a while: the host may start listening a moment after the VM.
    static func notify(_ address: AgentAddress, startupMillis: UInt32, attempts: Int = 20) async {
        var request = Vmtools_Guest_VmReadyRequest()
        request.kernelRelease = (try? MaitredService.kernelVersion().release) ?? ""
        request.startupMillis = startupMillis
        for attempt in 1...attempts {
            do {
                try await withGRPCClient(transport: try address.clientTransport()) { client in
                    _ = try await Vmtools_Guest_StartupListener.Client(wrapping: client).vmReady(request)
                }
                KernelLog.info("told the host (\(address)) the VM is ready after \(startupMillis) ms")
                return
            } catch {
                if attempt == attempts {
                    KernelLog.error("could not tell the host (\(address)) the VM is ready: \(error)")
                } else {
                    try? await Task.sleep(for: .milliseconds(min(100 * attempt, 1000)))
                }
            }
        }
    }
}
