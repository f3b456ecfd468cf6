import CKVM
import Devices
import EventLoop
import GuestMemory
import KVM
import PCI
import Synchronization
import Virtio
import X86

#if canImport(Glibc)
    import Glibc
#endif

/// One x86 virtual machine: KVM objects, guest RAM, the buses and devices, and one thread per vCPU.
///
/// Built from a ``VMConfig``; ``run()`` blocks until the guest resets, powers off or crashes.
public final class Machine: Sendable {
    /// How the VM ended.
    public enum ExitReason: Sendable, Equatable {
        /// The guest rebooted (`reboot`, keyboard-controller reset, triple fault). A VM does not
        /// restart itself: its manager decides.
        case reset
        /// The guest powered off.
        case powerOff
        /// The guest kernel panicked (reported through the pvpanic device).
        case guestPanicked
        /// The guest or the VMM failed; the text says how.
        case crashed(String)
        /// The host asked the VM to stop.
        case stopped
    }

    /// TSS and identity-map pages KVM needs on Intel, just below the BIOS area at 4 GiB.
    static let tssAddress: UInt64 = 0xFFFB_D000
    static let identityMapAddress: UInt64 = 0xFFFB_C000

    public let config: VMConfig
    let kvm: KVMSystem
    let vm: VirtualMachine
    public let memory: GuestMemory
    let pio = IOBus(name: "pio")
    let mmio = IOBus(name: "mmio")
    let pci: PCIBus
    /// Where PCI BARs are placed: the bottom of the 32-bit MMIO hole, 1 MiB per slot.
    static let pciWindowStart: UInt64 = GuestMemory.mmioHoleStart
    static let pciSlotSpacing: UInt64 = 1 << 20
    let vcpus: [VCPU]
    /// Per vCPU: inside KVM_RUN or not, exits, the last one (for `vmm status`).
    let vcpuActivity: [VCPUActivity]
    let serial: Serial8250
    let log: Logger
    private let exitReason = Mutex<ExitReason?>(nil)
    private let gate = PauseGate()
    /// The virtio-console's transport, when there is one: host input goes there instead of COM1.
    private let consoleTransport = Mutex<VirtioPCIDevice?>(nil)
    private let threads = Mutex<[HostThread]>([])
    /// The device thread: queue doorbells (ioeventfds) are served here, off the vCPU threads.
    let deviceLoop: EventLoop
    let msiRoutes: MSIRoutes
    private let doorbells = Mutex<[QueueDoorbells]>([])
    private let vsockDevice = Mutex<VirtioVsock?>(nil)
    private let vsockTransport = Mutex<VirtioPCIDevice?>(nil)
    private let netDevice = Mutex<VirtioNet?>(nil)

    /// Builds the VM: opens KVM, maps memory, loads the kernel, creates devices and vCPUs.
    public init(config: VMConfig, log: Logger) throws {
        guard (1...MPTable.maxCPUs).contains(config.cpus) else {
            throw VMMError("--cpus \(config.cpus) is outside 1...\(MPTable.maxCPUs)")
        }
        guard config.memoryMiB >= 32 else {
            throw VMMError("--mem \(config.memoryMiB) MiB is too small; use at least 32")
        }
        self.config = config
        self.log = log
        let kernel = try FileImage(path: config.kernelPath, what: "kernel")
        let initrd = try config.initrdPath.map { path throws(VMMError) in try FileImage(path: path, what: "initrd") }

        kvm = try KVMSystem()
        try kvm.require(KVMCapability.required)
        vm = try kvm.createVM()
        try vm.setTSSAddress(Self.tssAddress)
        try vm.setIdentityMapAddress(Self.identityMapAddress)
        try vm.createIRQChip()
        try vm.createPIT2()

        msiRoutes = MSIRoutes(vm: vm)
        do { deviceLoop = try EventLoop(name: "devices") } catch { throw VMMError("device thread: \(error)") }

        memory = try GuestMemory(x86MiB: config.memoryMiB)
        for (slot, region) in memory.regions.enumerated() {
            try vm.setUserMemoryRegion(
                slot: UInt32(slot), guestAddress: region.guestAddress, size: region.size,
                hostAddress: region.hostAddress)
        }

        let entry: LinuxLoader.Entry
        do {
            entry = try LinuxLoader().load(
                kernel: kernel, initrd: initrd, commandLine: config.commandLine,
                e820: LinuxLoader.e820Map(for: memory), into: memory)
        } catch let error as LoaderError {
            throw VMMError("\(config.kernelPath): \(error)")
        }
        // Both descriptions of the platform: ACPI (used by default; it gives the guest power-off)
        // and the MP table (used when the guest is booted with acpi=off).
        try memory.write(
            MPTable.build(cpus: config.cpus, at: LinuxLoader.mpTableAddress), at: LinuxLoader.mpTableAddress)
        try memory.write(ACPITables.build(cpus: config.cpus), at: ACPITables.rsdpAddress)

        let serialOutput = try Self.outputSink(config.serial, what: "serial")
        serial = Serial8250(interrupt: GSIInterrupt(vm: vm, gsi: 4), output: { serialOutput([$0]) })
        pci = PCIBus(mmio: mmio)
        let supportedCPUID = try kvm.supportedCPUID()
        let tscDeadlineTimer = kvm.checkExtension(.tscDeadlineTimer) > 0
        var vcpus: [VCPU] = []
        for id in 0..<config.cpus {
            let vcpu = try vm.createVCPU(id: UInt32(id))
            try VCPUSetup.configure(
                vcpu, supportedCPUID: supportedCPUID, count: UInt32(config.cpus), tscDeadlineTimer: tscDeadlineTimer)
            vcpus.append(vcpu)
        }
        self.vcpus = vcpus
        vcpuActivity = vcpus.map { VCPUActivity(id: $0.id) }
        // Only the bootstrap processor starts (in long mode for a bzImage, 32-bit protected mode
        // for PVH); the others wait for INIT/SIPI from it.
        try BootCPU.start(vcpus[0], memory: memory, entry: entry)
        try attachLegacyDevices()
        try attachPCIDevices()
        log.info(
            "vm: built in \(log.elapsedMilliseconds) ms: \(config.cpus) vCPU, \(config.memoryMiB) MiB, kernel \(config.kernelPath) (\(entry.boot.name)), initrd \(entry.initrd.map { "\($0.size) bytes at 0x\(String($0.address, radix: 16))" } ?? "none")"
        )
    }

    private func attachLegacyDevices() throws {
        try pio.insert(serial, base: 0x3F8, length: 8)
        let log = self.log
        try pio.insert(
            I8042(onReset: { [weak self] in
                log.info("the guest reset the CPU through the keyboard controller")
                self?.stop(.reset)
            }), base: 0x60, length: 5)
        let cmos = CMOS()
        cmos.setMemorySize(bytes: memory.size)
        try pio.insert(cmos, base: 0x70, length: 2)
        try pio.insert(
            SleepControl(s5SleepType: ACPITables.s5SleepType, onPowerOff: { [weak self] in self?.stop(.powerOff) }),
            base: UInt64(ACPITables.sleepControlPort), length: 2)
        try pio.insert(
            DebugPort(onMarker: { value in
                log.info("boot marker 0x\(String(value, radix: 16)) at \(log.elapsedMilliseconds) ms")
            }), base: DebugPort.port, length: 1)
    }

    /// The host bridge, then virtio-rng (always, as crosvm does), the virtio-console if asked
    /// for, one virtio-blk per disk, virtio-vsock and virtio-net if asked for, and pvpanic.
    private func attachPCIDevices() throws {
        try pio.insert(pci.configPortDevice, base: PCIBus.configPort, length: PCIBus.configPortLength)
        try pci.attach(PCIHostBridge(), slot: 0)
        var devices: [any VirtioDevice] = [VirtioRNG()]
        if let output = config.console {
            devices.append(VirtioConsole(output: try Self.outputSink(output, what: "console")))
        }
        for disk in config.disks {
            do {
                devices.append(try VirtioBlock(path: disk.path, readOnly: disk.readOnly))
            } catch {
                throw VMMError("\(error)")
            }
        }
        let log = self.log
        if let vsock = config.vsock {
            do {
                devices.append(
                    try VirtioVsock(
                        guestCID: vsock.cid, socketPath: vsock.socketPath, portSockets: config.vsockPortSockets
                    ) {
                        log.error($0)
                    })
            } catch {
                throw VMMError("\(error)")
            }
        }
        if let net = config.net {
            // Opened here, before the sandbox forbids opening files.
            let tap: TapDevice
            do {
                switch net.tap {
                case .name(let name): tap = try TapDevice(name: name)
                case .fd(let fd): tap = try TapDevice(adopting: fd)
                }
            } catch {
                throw VMMError("\(error)")
            }
            log.info("net: TAP \(tap.name), guest MAC \(net.mac)")
            devices.append(VirtioNet(backend: tap, mac: net.mac) { log.error($0) })
        }
        for (i, device) in devices.enumerated() {
            let slot = i + 1
            guard slot < PCIBus.maxDevices else { throw VMMError("too many devices for one PCI bus") }
            let transport = VirtioPCIDevice(
                device: device, memory: memory, barAddress: Self.pciWindowStart + UInt64(slot) * Self.pciSlotSpacing,
                signaler: IRQFDSignaler(routes: msiRoutes, log: log), onError: { log.error($0) })
            do { try transport.batchInterrupts(on: deviceLoop) } catch {
                throw VMMError("virtio-\(device.deviceType): interrupts on the device thread: \(error)")
            }
            let bells = try QueueDoorbells(vm: vm, loop: deviceLoop, transport: transport, log: log)
            doorbells.withLock { $0.append(bells) }
            try pci.attach(transport, slot: slot)
            if device is VirtioConsole { consoleTransport.withLock { $0 = transport } }
            if let vsock = device as? VirtioVsock {
                vsockDevice.withLock { $0 = vsock }
                vsockTransport.withLock { $0 = transport }
            }
            if let net = device as? VirtioNet { netDevice.withLock { $0 = net } }
            if let served = device as? any EventLoopDevice {
                do {
                    try served.start(on: deviceLoop) { [weak transport] queue in transport?.notify(queue: queue) }
                } catch {
                    throw VMMError("\(error)")
                }
            }
        }
        // After the virtio devices, so their slots (and the guest's names for them) never move.
        let panicSlot = devices.count + 1
        guard panicSlot < PCIBus.maxDevices else { throw VMMError("too many devices for one PCI bus") }
        let panic = PVPanicDevice(barAddress: Self.pciWindowStart + UInt64(panicSlot) * Self.pciSlotSpacing) {
            [weak self] events in
            if events.contains(.crashLoaded) {
                // A crash kernel is loaded: let it run and write its dump.
                log.error("the guest kernel panicked; its crash kernel takes over")
            } else {
                log.error("the guest kernel panicked")
                self?.stop(.guestPanicked)
            }
        }
        try pci.attach(panic, slot: panicSlot)
    }

    /// A writer for a console's output (`what` names it in errors).
    static func outputSink(_ output: VMConfig.SerialOutput, what: String) throws(VMMError)
        -> @Sendable ([UInt8]) -> Void
    {
        let fd: Int32
        switch output {
        case .none: return { _ in }
        case .stdout: fd = STDOUT_FILENO
        case .file(let path):
            fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
            guard fd >= 0 else {
                throw VMMError("cannot open the \(what) log \(path): \(String(cString: strerror(errno)))")
            }
        }
        return { bytes in
            var done = 0
            while done < bytes.count {
                let n = bytes[done...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { return }  // a closed console drops output; the guest must not stall
                done += n
            }
        }
    }

    // MARK: - Running

    /// Runs the vCPUs until the VM ends; returns why.
    public func run() throws -> ExitReason {
        VCPUKickSignal.install()
        // A console reader or vsock client that went away must not kill the VM.
        signal(SIGPIPE, SIG_IGN)
        let control = try config.controlSocket.map { path throws(VMMError) in
            try ControlServer(path: path) { [weak self] command in
                self?.control(command) ?? #"{"ok":false,"error":"the VM is gone"}"#
            }
        }
        defer {
            control?.removeSocketFile()
            vsockDevice.withLock { $0 }?.removeSocketFile()
        }
        // Placement: every thread started from here on inherits the device threads' CPUs; the
        // vCPU threads move themselves to theirs.
        try config.vcpuAffinity?.check(for: "--vcpu-affinity")
        try config.deviceAffinity?.check(for: "--device-affinity")
        try config.deviceAffinity?.applyToCurrentThread(for: "--device-affinity")
        // Everything is open and mapped: from here on, only what a running VM needs (and the
        // threads started below inherit the empty capability sets).
        if config.sandbox {
            try VMMSandbox.enter(placingThreads: config.vcpuAffinity != nil)
            log.info("sandbox: seccomp allowlist loaded, capabilities dropped")
        }
        try StopSignals.handle { [weak self] in self?.stop(.stopped) }
        try control?.start()
        do { try deviceLoop.start() } catch { throw VMMError("device thread: \(error)") }
        defer { deviceLoop.stop() }
        var started: [HostThread] = []
        for vcpu in vcpus {
            started.append(try vmmThread(name: "vcpu\(vcpu.id)") { [self] in runLoop(vcpu) })
        }
        threads.withLock { $0 = started }
        let terminal = config.serialInput ? RawTerminal() : nil
        defer { terminal?.restore() }
        if config.serialInput { startConsoleInput() }
        for thread in started { thread.join() }
        return exitReason.withLock { $0 } ?? .crashed("vCPUs stopped without a reason")
    }

    /// Ends the VM with `reason` (the first reason wins) and kicks every vCPU out of the guest.
    public func stop(_ reason: ExitReason) {
        let first = exitReason.withLock { current -> Bool in
            guard current == nil else { return false }
            current = reason
            return true
        }
        guard first else { return }
        gate.release()
        kickAll()
    }

    /// Takes every vCPU out of the guest and holds it until ``resume()``.
    public func pause() {
        guard !isStopping else { return }
        gate.pause(vcpus: vcpus.count) { kickAll() }
    }

    public func resume() { gate.resume() }

    public var isPaused: Bool { gate.isPaused }

    private func kickAll() {
        for vcpu in vcpus { vcpu.requestExit() }
        for thread in threads.withLock({ $0 }) { thread.kick() }
    }

    var isStopping: Bool { exitReason.withLock { $0 != nil } }

    private func runLoop(_ vcpu: VCPU) {
        let activity = vcpuActivity[Int(vcpu.id)]
        do { try config.vcpuAffinity?.applyToCurrentThread(for: "--vcpu-affinity") } catch {
            return stop(.crashed("vCPU \(vcpu.id): \(error)"))
        }
        while !isStopping {
            gate.parkIfPaused()
            if isStopping { break }
            do {
                try handle(activity.running { try vcpu.run() }, on: vcpu)
            } catch {
                stop(.crashed("vCPU \(vcpu.id): \(error)"))
            }
        }
    }

    private func handle(_ exit: VCPUExit, on vcpu: VCPU) {
        switch exit {
        case .io(let port, let isWrite, let size, let count, let data):
            pio.access(UInt64(port), isWrite: isWrite, size: size, count: count, data: data)
        case .mmio(let address, let isWrite, let data):
            mmio.access(address, isWrite: isWrite, size: data.count, data: data)
        case .interrupted:
            break
        case .halt:
            stop(.powerOff)
        case .shutdown:
            // A triple fault: the guest reset without asking (unlike reboot=k through the i8042).
            log.error("vCPU \(vcpu.id): the guest triple-faulted (KVM_EXIT_SHUTDOWN): \(vcpu.stateReport())")
            stop(.reset)
        case .systemEvent(let type):
            switch Int32(type) {
            case KVM_SYSTEM_EVENT_SHUTDOWN: stop(.powerOff)
            case KVM_SYSTEM_EVENT_RESET: stop(.reset)
            default: stop(.crashed("the guest reported a crash (system event \(type)) on vCPU \(vcpu.id)"))
            }
        case .internalError(let suberror):
            stop(.crashed("KVM internal error \(suberror) on vCPU \(vcpu.id): \(vcpu.stateReport())"))
        case .failEntry(let reason):
            stop(.crashed("VM entry failed (hardware reason 0x\(String(reason, radix: 16))) on vCPU \(vcpu.id)"))
        case .other(let reason):
            stop(.crashed("unexpected KVM exit \(reason) on vCPU \(vcpu.id)"))
        }
    }

    // MARK: - Control

    /// Answers one control-socket command with a JSON line.
    func control(_ command: String) -> String {
        switch command {
        case "stop":
            stop(.stopped)
            return #"{"ok":true,"state":"stopping"}"#
        case "pause":
            pause()
            return #"{"ok":true,"state":"\#(stateName)"}"#
        case "resume":
            resume()
            return #"{"ok":true,"state":"\#(stateName)"}"#
        case "registers":
            return #"{"ok":true,"state":"\#(stateName)","vcpus":[\#(registerReports().joined(separator: ","))]}"#
        case "status":
            return
                #"{"ok":true,"state":"\#(stateName)","pid":\#(getpid()),"vcpus":\#(config.cpus),"memory_mib":\#(config.memoryMiB),"uptime_ms":\#(log.elapsedMilliseconds),"ioeventfds":\#(ioeventfdCount),"vcpu_activity":[\#(vcpuActivity.map(\.json).joined(separator: ","))]\#(netStatus)\#(vsockStatus)}"#
        default:
            let shown = String(command.prefix(40).filter { $0.isLetter || $0.isNumber || $0 == " " || $0 == "-" })
            return #"{"ok":false,"error":"unknown command '\#(shown)'; use stop, pause, resume, status or registers"}"#
        }
    }

    /// Each vCPU's registers, read with the vCPUs out of the guest (paused for the moment when
    /// the VM runs): where a guest that stopped making progress spins or waits. A halted vCPU is
    /// taken out of its wait and put back, which also lets it take an interrupt it was not woken
    /// for (a stall that ends after this pointed at a lost wake-up).
    func registerReports() -> [String] {
        guard !isStopping else { return [] }
        let wasPaused = isPaused
        if !wasPaused { pause() }
        defer { if !wasPaused { resume() } }
        return vcpus.map { #"{"id":\#($0.id),"registers":"\#($0.stateReport())"}"# }
    }

    /// `,"net":{...}`: the NIC's address and traffic, when the VM has one.
    var netStatus: String {
        guard let net = netDevice.withLock({ $0 }) else { return "" }
        let c = net.counters
        return
            #","net":{"mac":"\#(net.mac)","tx_packets":\#(c.transmittedPackets),"tx_bytes":\#(c.transmittedBytes),"tx_dropped":\#(c.transmitDropped),"rx_packets":\#(c.receivedPackets),"rx_bytes":\#(c.receivedBytes),"rx_dropped":\#(c.receiveDropped)}"#
    }

    /// `,"vsock":{...}`: the queues' positions, replies waiting and each stream's credit, so that
    /// a stalled stream can be told apart from a stalled guest.
    var vsockStatus: String {
        guard let vsock = vsockDevice.withLock({ $0 }), let transport = vsockTransport.withLock({ $0 }) else {
            return ""
        }
        let queues = transport.queueStatus.map(\.json).joined(separator: ",")
        return
            #","vsock":{"cid":\#(vsock.guestCID),"needs_reset":\#(transport.needsReset),"queues":[\#(queues)],\#(vsock.statusJSON())}"#
    }

    /// Queue doorbells currently served by KVM ioeventfds (0 before the guest's drivers map them).
    var ioeventfdCount: Int { doorbells.withLock { $0.reduce(0) { $0 + $1.registeredCount } } }

    var stateName: String { isStopping ? "stopping" : isPaused ? "paused" : "running" }

    /// Feeds the host's stdin to the serial console from a detached thread.
    private func startConsoleInput() {
        let serial = self.serial
        let console = consoleTransport.withLock { $0 }
        _ = try? vmmThread(name: "console-in") {
            var buffer = [UInt8](repeating: 0, count: 256)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(STDIN_FILENO, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { return }
                var pending = buffer[0..<n]
                // The guest drains its buffers as it runs; wait rather than drop typed input.
                while !pending.isEmpty {
                    let accepted: Int
                    if let console, let device = console.device as? VirtioConsole {
                        accepted = device.receive(pending)
                        console.notify(queue: 0)
                    } else {
                        accepted = serial.receive(pending)
                    }
                    pending = pending.dropFirst(accepted)
                    if !pending.isEmpty { usleep(1000) }
                }
            }
        }
    }
}

/// An edge on one GSI of the in-kernel irqchip (ISA devices: IRQ n is GSI n).
struct GSIInterrupt: InterruptLine {
    let vm: VirtualMachine
    let gsi: UInt32

    func trigger() {
        try? vm.setIRQLine(gsi, high: true)
        try? vm.setIRQLine(gsi, high: false)
    }
}
