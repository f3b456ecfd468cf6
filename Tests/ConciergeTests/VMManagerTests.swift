import ConciergeService
import Foundation
import Processes
import Synchronization
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// concierge's VM table on this machine: its /dev/kvm cannot boot Linux, so these tests cover
/// what happens around a boot — validation, a vmm that fails, cleanup, re-adoption and the stop
/// ladder. StartVm to a running guest is tested in the testbed (concierge.sh).
@Suite("concierge VM manager")
struct VMManagerTests {
    /// A fresh state and runtime folder, an images folder with image `fake` (not a kernel), the
    /// vmm built beside the tests, and TAP names no other test uses.
    final class Fixture: Sendable {
        let folder: String
        let config: ConciergeConfiguration
        let events = Mutex<[String]>([])

        init() throws {
            folder =
                FileManager.default.temporaryDirectory.appendingPathComponent("concierge-\(UUID().uuidString)").path
            var config = ConciergeConfiguration()
            config.stateDirectory = "\(folder)/state"
            config.runtimeDirectory = "\(folder)/run"
            config.vmmPath = builtProduct("vmm")
            // Unique per fixture: tests run in parallel, each would otherwise want <prefix>0.
            config.tapPrefix = "vt\(UUID().uuidString.prefix(6).lowercased())x"
            config.stopStepSeconds = 0.5
            config.pools = PoolConfiguration(
                firstCID: 3, lastCID: 100, subnetBase: IPv4Address("100.115.93.0") ?? IPv4Address(0), subnetCount: 4)
            self.config = config
            let image = "\(config.imagesDirectory)/fake"
            try FileManager.default.createDirectory(atPath: image, withIntermediateDirectories: true)
            try Data("not a kernel".utf8).write(to: URL(fileURLWithPath: "\(image)/vmlinuz"))
            try Data().write(to: URL(fileURLWithPath: "\(image)/initrd.img"))
        }

        deinit { try? FileManager.default.removeItem(atPath: folder) }

        func manager() throws -> VMManager {
            try VMManager(config: config, log: { _ in }) { [self] event in
                let text: String
                switch event {
                case .starting(let name): text = "starting \(name)"
                case .started(let info): text = "started \(info.name)"
                case .stopping(let name): text = "stopping \(name)"
                case .stopped(let name, let reason): text = "stopped \(name) \(reason.rawValue)"
                }
                self.events.withLock { $0.append(text) }
            }
        }

        var savedState: ConciergeState? { try? StateFile<ConciergeState>(path: config.stateFile).load() }
    }

    @Test("bad requests are refused with InvalidArgument or NotFound, and nothing is allocated")
    func badRequests() async throws {
        let fixture = try Fixture()
        let manager = try fixture.manager()
        var options = VMOptions(name: "../etc")
        await #expect { try await manager.start(options) } throws: { ($0 as? ConciergeError)?.kind == .invalidArgument }
        options = VMOptions(name: "a")
        options.cpus = 0
        await #expect { try await manager.start(options) } throws: { "\($0)".contains("cpus 0") }
        options = VMOptions(name: "a")
        options.image = "missing"
        await #expect { try await manager.start(options) } throws: {
            ($0 as? ConciergeError)?.kind == .notFound && "\($0)".contains("no image 'missing'")
        }
        options = VMOptions(name: "a")
        options.kernel = "/no/such/kernel"
        await #expect { try await manager.start(options) } throws: { "\($0)".contains("/no/such/kernel") }
        for (channels, why) in [
            ([MojoChannel(number: 0, guestSocket: "/g.sock", hostSocket: "/h.sock")], "start at 1"),
            ([MojoChannel(number: 1, guestSocket: "g.sock", hostSocket: "/h.sock")], "guest socket 'g.sock'"),
            ([MojoChannel(number: 1, guestSocket: "/g.sock", hostSocket: "/h sock")], "host socket '/h sock'"),
            ([MojoChannel(number: 1, guestSocket: "/g.sock", hostSocket: "/$HOME")], "host socket '/$HOME'"),
            (
                [
                    MojoChannel(number: 1, guestSocket: "/g.sock", hostSocket: "/h.sock"),
                    MojoChannel(number: 2, guestSocket: "/g.sock", hostSocket: "/i.sock"),
                ], "used twice"
            ),
        ] {
            options = VMOptions(name: "a")
            options.mojoChannels = channels
            await #expect { try await manager.start(options) } throws: {
                ($0 as? ConciergeError)?.kind == .invalidArgument && "\($0)".contains(why)
            }
        }
        // Good channels, but no systemd to start the host's proxy with: a clear refusal.
        options = VMOptions(name: "a")
        options.mojoChannels = [MojoChannel(number: 1, guestSocket: "/g.sock", hostSocket: "/h.sock")]
        await #expect { try await manager.start(options) } throws: { "\($0)".contains("mojo channels need systemd") }
        #expect(fixture.savedState?.pools.held.isEmpty ?? true)
        #expect(await manager.list().isEmpty)
    }

    @Test("a vmm that cannot boot the kernel: StartVm fails naming why, and every resource is freed")
    func vmmFails() async throws {
        try #require(getuid() == 0, "StartVm makes TAP interfaces, which needs root")
        let fixture = try Fixture()
        try #require(
            FileManager.default.isExecutableFile(atPath: fixture.config.vmmPath), "vmm is built beside the tests")
        let manager = try fixture.manager()
        var options = VMOptions(name: "broken")
        options.image = "fake"
        options.memoryMiB = 64
        let started = ContinuousClock.now
        await #expect { try await manager.start(options) } throws: { error in
            let text = "\(error)"
            return (error as? ConciergeError)?.kind == .failed && text.contains("before the guest was ready")
                && text.contains("vmm said")
        }
        #expect(
            ContinuousClock.now - started < .seconds(30), "a vmm that exits ends StartVm at once, not at the timeout")
        #expect(fixture.savedState?.pools.held.isEmpty == true, "the CID, subnet and MAC are free again")
        #expect(fixture.savedState?.vms.isEmpty == true)
        #expect(!FileManager.default.fileExists(atPath: fixture.config.runtimeDirectory(of: "broken")))
        var tapGone = false
        for _ in 0..<250 where !tapGone {
            tapGone = if_nametoindex("\(fixture.config.tapPrefix)0") == 0
            if !tapGone { try await Task.sleep(for: .milliseconds(20)) }
        }
        #expect(tapGone, "the TAP went with the VMM")
        #expect(fixture.events.withLock { $0 } == ["starting broken", "stopped broken start-failed"])
    }

    @Test("a VMM whose guest never becomes ready: StartVm times out, the VMM is killed, everything is freed")
    func neverReady() async throws {
        try #require(getuid() == 0, "StartVm makes TAP interfaces, which needs root")
        let fixture = try Fixture()
        // A stand-in for vmm that runs but boots nothing: this machine's KVM cannot boot a guest
        // that would hang, and a missing VmReady is what is under test. It holds the TAP (fd 3)
        // as vmm would, so the TAP's end shows the stand-in's end.
        let script = "\(fixture.folder)/hanging-vmm"
        try "#!/bin/sh\nexec sleep 600\n".write(toFile: script, atomically: true, encoding: .utf8)
        chmod(script, 0o755)
        var config = fixture.config
        config.vmmPath = script
        let manager = try VMManager(config: config, log: { _ in }) { _ in }
        var options = VMOptions(name: "silent")
        options.image = "fake"
        // Long enough for the startup listener to come up under the whole parallel suite
        // (it took over 2 s in CI), so that the stand-in is started and then waited out.
        options.timeoutSeconds = 15
        await #expect { try await manager.start(options) } throws: { error in
            (error as? ConciergeError)?.kind == .timedOut && "\(error)".contains("did not become ready within 15 s")
        }
        var tapGone = false
        for _ in 0..<250 where !tapGone {
            tapGone = if_nametoindex("\(config.tapPrefix)0") == 0
            if !tapGone { try await Task.sleep(for: .milliseconds(20)) }
        }
        #expect(tapGone, "the stand-in was killed, and its TAP went with it")
        #expect(fixture.savedState?.pools.held.isEmpty == true && fixture.savedState?.vms.isEmpty == true)
        #expect(!FileManager.default.fileExists(atPath: config.runtimeDirectory(of: "silent")))
    }

    @Test("a restart re-adopts a VMM that still runs, frees one that is gone, and StopVm climbs to SIGTERM")
    func readoptAndStop() async throws {
        let fixture = try Fixture()
        // Stand-ins for two vmm processes from before the restart (no guest can boot here): one
        // alive, one that has ended. Re-adoption looks at the PID and its start time only.
        let alive = try ChildProcess.spawn(executable: "/bin/sleep", arguments: ["60"])
        let gone = try ChildProcess.spawn(executable: "/bin/true", arguments: [])
        _ = await gone.terminated()
        var state = ConciergeState()
        for (name, pid) in [("alive", alive.pid), ("gone", gone.pid)] {
            let resources = try state.pools.allocate(for: name, config: fixture.config.pools)
            state.vms[name] = VMRecord(
                name: name, pid: pid, startTicks: VMManager.startTicks(of: pid) ?? 1, resources: resources, tap: "none",
                cpus: 1, memoryMiB: 64, kernel: "test", startedAt: 0)
        }
        try FileManager.default.createDirectory(
            atPath: fixture.config.stateDirectory, withIntermediateDirectories: true)
        try StateFile<ConciergeState>(path: fixture.config.stateFile).save(state)

        let manager = try fixture.manager()
        #expect(await manager.resume() == ["alive"])
        #expect(await manager.list().map(\.name) == ["alive"])
        #expect(fixture.savedState?.pools.held.keys.sorted() == ["alive"], "the gone VM's resources are free")
        #expect(try await manager.info("alive").pid == alive.pid)

        try await manager.stop("alive")
        #expect(await alive.terminated(within: 5) == .signaled(SIGTERM), "no maitred, no control socket: SIGTERM")
        #expect(await manager.list().isEmpty)
        #expect(fixture.savedState?.pools.held.isEmpty == true && fixture.savedState?.vms.isEmpty == true)
        #expect(fixture.events.withLock { $0 } == ["stopping alive", "stopped alive requested"])
        await #expect { try await manager.stop("alive") } throws: { ($0 as? ConciergeError)?.kind == .notFound }
    }

    @Test("a vmm left by a start that concierge did not live to finish is killed by the next concierge")
    func unfinishedStart() async throws {
        let fixture = try Fixture()
        // A stand-in for the vmm of a start cut short; a second identity whose PID is reused by
        // another process (the start time differs) must be left alone.
        let orphan = try ChildProcess.spawn(executable: "/bin/sleep", arguments: ["60"])
        let bystander = try ChildProcess.spawn(executable: "/bin/sleep", arguments: ["60"])
        var state = ConciergeState()
        _ = try state.pools.allocate(for: "half", config: fixture.config.pools)
        state.startingVMMs = [
            "half": ProcessIdentity(pid: orphan.pid, startTicks: VMManager.startTicks(of: orphan.pid) ?? 1),
            "reused": ProcessIdentity(
                pid: bystander.pid, startTicks: (VMManager.startTicks(of: bystander.pid) ?? 1) + 1),
        ]
        try FileManager.default.createDirectory(
            atPath: fixture.config.stateDirectory, withIntermediateDirectories: true)
        try StateFile<ConciergeState>(path: fixture.config.stateFile).save(state)

        let manager = try fixture.manager()
        #expect(await manager.resume().isEmpty)
        #expect(await orphan.terminated(within: 5) == .signaled(SIGKILL))
        #expect(bystander.termination == nil, "a PID with another start time is not the vmm")
        #expect(fixture.savedState?.startingVMMs == nil)
        #expect(fixture.savedState?.pools.held.isEmpty == true)
        bystander.signal(SIGKILL)
        _ = await bystander.terminated()
    }

    @Test("a VMM that dies on its own is noticed at once and its VM freed")
    func dies() async throws {
        let fixture = try Fixture()
        let process = try ChildProcess.spawn(executable: "/bin/sleep", arguments: ["60"])
        var state = ConciergeState()
        let resources = try state.pools.allocate(for: "victim", config: fixture.config.pools)
        state.vms["victim"] = VMRecord(
            name: "victim", pid: process.pid, startTicks: VMManager.startTicks(of: process.pid) ?? 1,
            resources: resources,
            tap: "none", cpus: 1, memoryMiB: 64, kernel: "test", startedAt: 0)
        try FileManager.default.createDirectory(
            atPath: fixture.config.stateDirectory, withIntermediateDirectories: true)
        try StateFile<ConciergeState>(path: fixture.config.stateFile).save(state)
        let manager = try fixture.manager()
        #expect(await manager.resume() == ["victim"])
        process.signal(SIGKILL)
        var freed = false
        for _ in 0..<200 where !freed {
            try await Task.sleep(for: .milliseconds(25))
            freed = await manager.list().isEmpty
        }
        #expect(freed)
        // Adopted, not our child: the status is not ours to read, only that it ended.
        #expect(fixture.events.withLock { $0 } == ["stopped victim exited"])
        #expect(fixture.savedState?.pools.held.isEmpty == true)
    }
}
