import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import GuestClient
import GuestProtocol
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The other Maitred calls, and bad input: each error names what failed, and the agent goes on.
@Suite struct MaitredCallsTests {
    private func call<T: Sendable>(
        _ agent: TestAgent,
        _ body: @Sendable (Vmtools_Guest_Maitred.Client<HTTP2ClientTransport.Posix>) async throws -> T
    ) async throws -> T {
        try await agent.maitred.withClient { try await body(Vmtools_Guest_Maitred.Client(wrapping: $0)) }
    }

    @Test func kernelVersionIsUname() async throws {
        try await TestAgent.with { agent in
            let version = try await call(agent) { try await $0.getKernelVersion(Vmtools_Guest_Empty()) }
            let release = hostKernelRelease()
            #expect(version.release == release)
            #expect(version.sysname == "Linux")
        }
    }

    @Test func mountErrorsNameTheMount() async throws {
        try await TestAgent.with { agent in
            var request = Vmtools_Guest_MountRequest()
            request.source = "/dev/no-such-disk"
            request.target = "\(agent.directory)/mnt"
            request.fstype = "ext4"
            request.createTarget = true
            let missing = await #expect(throws: RPCError.self) {
                try await call(agent) { [request] in try await $0.mount(request) }
            }
            #expect(missing?.code == .notFound)
            #expect(missing?.message.contains("/dev/no-such-disk") == true)

            request.target = "relative/path"
            let relative = await #expect(throws: RPCError.self) {
                try await call(agent) { [request] in try await $0.mount(request) }
            }
            #expect(relative?.code == .invalidArgument)
        }
    }

    @Test func networkConfigurationIsValidated() async throws {
        try await TestAgent.with { agent in
            var request = Vmtools_Guest_NetworkConfig()
            request.interface = "nosuch0"
            request.address = "10.0.0.2"
            request.netmask = "255.255.255.252"
            let missing = await #expect(throws: RPCError.self) {
                try await call(agent) { [request] in try await $0.configureNetwork(request) }
            }
            #expect(missing?.code == .notFound)

            request.address = "10.0.0.300"
            let bad = await #expect(throws: RPCError.self) {
                try await call(agent) { [request] in try await $0.configureNetwork(request) }
            }
            #expect(bad?.code == .invalidArgument)

            request.address = "10.0.0.2"
            request.netmask = "255.0.255.0"
            let holes = await #expect(throws: RPCError.self) {
                try await call(agent) { [request] in try await $0.configureNetwork(request) }
            }
            #expect(holes?.message.contains("not contiguous") == true)
        }
    }

    @Test func setTimeRefusesNonsense() async throws {
        try await TestAgent.with { agent in
            var request = Vmtools_Guest_SetTimeRequest()
            request.seconds = 1_700_000_000
            request.nanos = 2_000_000_000
            let error = await #expect(throws: RPCError.self) {
                try await call(agent) { [request] in try await $0.setTime(request) }
            }
            #expect(error?.code == .invalidArgument)
        }
    }

    @Test func unknownMethodsAndGarbageGetErrors() async throws {
        try await TestAgent.with { agent in
            try await agent.maitred.withClient { client in
                let bogus = MethodDescriptor(fullyQualifiedService: "vmtools.guest.Maitred", method: "Bogus")
                let unknown = await #expect(throws: RPCError.self) {
                    try await client.unary(
                        request: ClientRequest(message: [UInt8]()), descriptor: bogus, serializer: RawBytes(),
                        deserializer: RawBytes(), options: .defaults
                    ) { try $0.message }
                }
                #expect(unknown?.code == .unimplemented)

                // A LaunchProcessRequest that is not protobuf at all.
                let launch = MethodDescriptor(fullyQualifiedService: "vmtools.guest.Maitred", method: "LaunchProcess")
                let garbage = await #expect(throws: RPCError.self) {
                    try await client.unary(
                        request: ClientRequest(message: [0xff, 0xff, 0xff, 0xff, 0x0f]), descriptor: launch,
                        serializer: RawBytes(), deserializer: RawBytes(), options: .defaults
                    ) { try $0.message }
                }
                #expect(garbage != nil)
                let version = try await Vmtools_Guest_Maitred.Client(wrapping: client).getKernelVersion(
                    Vmtools_Guest_Empty())
                #expect(!version.release.isEmpty)
            }
        }
    }

    @Test func startupListenerGivesUpAtItsTimeout() async throws {
        let path = "/tmp/ready-timeout-\(getpid()).sock"
        let started = ContinuousClock.now
        let error = await #expect(throws: GuestClientError.self) {
            _ = try await StartupListener.waitForReady(on: path, timeout: .milliseconds(300))
        }
        #expect(error?.description.contains("timed out") == true)
        #expect(ContinuousClock.now - started < .seconds(30))  // a hang would be forever; the run may be loaded
        #expect(access(path, F_OK) != 0)
    }

    @Test("guests calling VmReady all at once: the listener returns the first and ends cleanly, again and again")
    func startupListenerUnderManyCallers() async throws {
        for round in 0..<10 {
            let path = "/tmp/ready-many-\(getpid())-\(round).sock"
            let listener = Task { try await StartupListener.waitForReady(on: path, timeout: .seconds(20)) }
            for _ in 0..<2000 where access(path, F_OK) != 0 { try await Task.sleep(for: .milliseconds(5)) }
            await withTaskGroup(of: Void.self) { group in
                for guest in 0..<8 {
                    group.addTask {
                        var request = Vmtools_Guest_VmReadyRequest()
                        request.kernelRelease = "guest-\(guest)"
                        _ = try? await withGRPCClient(
                            transport: .http2NIOPosix(
                                target: .unixDomainSocket(path: path), transportSecurity: .plaintext)
                        ) { client in
                            try await Vmtools_Guest_StartupListener.Client(wrapping: client).vmReady(request)
                        }
                    }
                }
            }
            let ready = try await listener.value
            #expect(ready.kernelRelease.hasPrefix("guest-"))
        }
    }

    @Test func vmReadyReachesTheStartupListener() async throws {
        try await TestAgent.with(notifyReady: true) { agent in
            let ready = try await StartupListener.waitForReady(on: agent.readySocket, timeout: .seconds(20))
            let release = hostKernelRelease()
            #expect(ready.kernelRelease == release)
        }
    }
}

/// Bytes as they are, to send what no generated client would.
struct RawBytes: MessageSerializer, MessageDeserializer {
    func serialize<Bytes: GRPCContiguousBytes>(_ message: [UInt8]) throws -> Bytes { Bytes(message) }
    func deserialize<Bytes: GRPCContiguousBytes>(_ serializedMessageBytes: Bytes) throws -> [UInt8] {
        serializedMessageBytes.withUnsafeBytes { Array($0) }
    }
}

/// This machine's `uname -r`: what maitred, run here, reports.
func hostKernelRelease() -> String {
    var name = utsname()
    uname(&name)
    return withUnsafeBytes(of: name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
}
