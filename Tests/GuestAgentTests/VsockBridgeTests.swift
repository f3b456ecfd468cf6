import Foundation
import GRPCCore
import GuestClient
import GuestProtocol
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The bridge over vmm's `CONNECT <port>` socket. vmm itself cannot boot a guest on this
/// machine, so a small stand-in plays vmm's side of the exchange here (a fake, used only for
/// that reason; the testbed runs the bridge against the real vmm): it reads the CONNECT line,
/// answers like vmm, then splices to maitred's socket.
@Suite struct VsockBridgeTests {
    @Test func callsGoThroughTheConnectExchange() async throws {
        try await TestAgent.with { agent in
            let vmm = try FakeVMMSocket(
                path: "\(agent.directory)/vsock.sock", ports: [8888: "\(agent.directory)/maitred.sock"])
            defer { vmm.stop() }
            let endpoint = GuestEndpoint.vsock(socket: vmm.path, port: 8888)
            let version = try await endpoint.withClient {
                try await Vmtools_Guest_Maitred.Client(wrapping: $0).getKernelVersion(Vmtools_Guest_Empty())
            }
            #expect(version.sysname == "Linux")
            #expect(vmm.requests == ["CONNECT 8888"])
        }
    }

    @Test func aRefusedPortIsReportedNotHung() async throws {
        try await TestAgent.with { agent in
            let vmm = try FakeVMMSocket(path: "\(agent.directory)/vsock.sock", ports: [:])
            defer { vmm.stop() }
            let endpoint = GuestEndpoint.vsock(socket: vmm.path, port: 1234)
            let started = ContinuousClock.now
            let error = await #expect(throws: GuestClientError.self) {
                try await endpoint.withClient {
                    try await Vmtools_Guest_Maitred.Client(wrapping: $0).getKernelVersion(Vmtools_Guest_Empty())
                }
            }
            #expect(error?.description.contains("refused vsock port 1234") == true)
            #expect(ContinuousClock.now - started < .seconds(30))  // a hang would be forever; the run may be loaded
        }
    }

    @Test func aGuestThatDoesNotAnswerIsATimeoutNotARefusal() async throws {
        try await TestAgent.with { agent in
            let vmm = try FakeVMMSocket(path: "\(agent.directory)/vsock.sock", ports: [:], silentPorts: [8888])
            defer { vmm.stop() }
            let endpoint = GuestEndpoint.vsock(socket: vmm.path, port: 8888)
            let error = await #expect(throws: GuestClientError.self) {
                try await endpoint.withClient {
                    try await Vmtools_Guest_Maitred.Client(wrapping: $0).getKernelVersion(Vmtools_Guest_Empty())
                }
            }
            #expect(
                error?.description == "timed out: vsock port 8888: the guest did not accept within 5000 ms",
                "\(String(describing: error))")
        }
    }

    @Test func aMissingVsockSocketIsNamed() async throws {
        let endpoint = GuestEndpoint.vsock(socket: "/tmp/no-such-vm-\(getpid()).sock", port: 8888)
        let error = await #expect(throws: GuestClientError.self) {
            try await endpoint.withClient {
                try await Vmtools_Guest_Maitred.Client(wrapping: $0).getKernelVersion(Vmtools_Guest_Empty())
            }
        }
        #expect(error?.description.contains("no-such-vm") == true)
    }
}
