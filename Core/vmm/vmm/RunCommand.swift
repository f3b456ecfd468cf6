import ArgumentParser
import VMM

#if canImport(Glibc)
    import Glibc
#endif

/// `vmm run`: boots a Linux kernel in a new VM and runs until the guest reboots or powers off.
///
/// Exit status: 0 when the guest rebooted or powered off, 1 when it crashed or the VM could not be
/// built (the error says why).
struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run", abstract: "Boot a Linux kernel (bzImage, or ELF vmlinux with PVH) in a new VM.",
        discussion: """
            Exit status: 0 when the guest powers off or reboots or the VM is stopped on request, \
            \(guestPanicExitCode) when the guest kernel panics (reported through pvpanic), 1 when the \
            VM cannot be built or crashes, 159 when the sandbox stops a system call vmm may not make.
            """)

    /// The exit status for a guest kernel panic (crosvm's value).
    static let guestPanicExitCode: Int32 = 34

    @Option(help: "The kernel: a bzImage such as /boot/vmlinuz-*, or an ELF vmlinux with a PVH entry.")
    var kernel: String

    @Option(help: "An initramfs (cpio, optionally compressed).")
    var initrd: String?

    @Option(name: [.short, .customLong("params")], help: "Kernel parameters, appended to the defaults; may repeat.")
    var params: [String] = []

    @Option(help: "Guest memory in MiB.")
    var mem: UInt64 = 256

    @Option(help: "Number of vCPUs.")
    var cpus: Int = 1

    @Option(help: "A read-only disk image (virtio-blk); may repeat. The first disk is /dev/vda.")
    var disk: [String] = []

    @Option(help: "A read-write disk image (virtio-blk); may repeat, after the --disk images.")
    var rwdisk: [String] = []

    @Option(help: "Serial console output: stdout, none, or file=PATH.")
    var serial: String = "stdout"

    @Option(help: "Add a virtio-console (hvc0) with output to stdout, none, or file=PATH; stdin then feeds hvc0.")
    var console: String?

    @Option(help: "Control socket path: `vmm stop|pause|resume|status PATH` talk to it.")
    var socket: String?

    @Option(help: "The guest's vsock CID (3 or more); needs --vsock.")
    var cid: UInt64?

    @Option(
        help: ArgumentHelp(
            "Add a virtio-vsock whose host side is this Unix socket: write `CONNECT <port>\\n` to reach a guest port; guest connections to host port P go to PATH_P.",
            valueName: "path"))
    var vsock: String?

    @Option(
        name: .customLong("vsock-listen"),
        help: ArgumentHelp(
            "Also listen on PATH for guest vsock port PORT: a connection there is that port's stream from its first byte (no CONNECT line; for gRPC clients). Repeatable; needs --vsock.",
            valueName: "port:path"))
    var vsockListen: [String] = []

    @Option(
        help: ArgumentHelp(
            "Add a virtio-net NIC on this TAP interface (created if missing, which needs CAP_NET_ADMIN).",
            valueName: "name"))
    var tap: String?

    @Option(
        name: .customLong("tap-fd"),
        help: ArgumentHelp(
            "Add a virtio-net NIC on this inherited descriptor, attached to a TAP with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR.",
            valueName: "fd"))
    var tapFD: Int32?

    @Option(
        help: ArgumentHelp(
            "The NIC's MAC address (unicast), XX:XX:XX:XX:XX:XX; default: a random locally administered one (02:...).",
            valueName: "mac"))
    var mac: String?

    @Option(
        help: ArgumentHelp(
            "Run the vCPU threads only on these host CPUs (a list such as 2-3 or 1,3; default: anywhere).",
            valueName: "cpus"))
    var vcpuAffinity: String?

    @Option(
        help: ArgumentHelp(
            "Run the device thread and vmm's other threads only on these host CPUs (default: anywhere).",
            valueName: "cpus"))
    var deviceAffinity: String?

    @Flag(help: "Do not feed stdin to the serial console.")
    var noConsoleInput = false

    @Flag(help: "Run without the seccomp allowlist and with the capabilities vmm was started with (debugging).")
    var disableSandbox = false

    func validate() throws {
        _ = try output(serial, option: "serial")
        guard (cid == nil) == (vsock == nil) else { throw ValidationError("--cid and --vsock go together") }
        guard vsockListen.isEmpty || vsock != nil else { throw ValidationError("--vsock-listen needs --vsock") }
        _ = try vsockPortSockets()
        if let console { _ = try output(console, option: "console") }
        _ = try netConfig()
        _ = try cpuSet(vcpuAffinity)
        _ = try cpuSet(deviceAffinity)
    }

    func cpuSet(_ list: String?) throws -> CPUSet? {
        do { return try list.map { list throws(VMMError) in try CPUSet(parsing: list) } } catch {
            throw ValidationError(error.description)
        }
    }

    func netConfig() throws -> VMConfig.NetConfig? {
        do { return try VMConfig.NetConfig.fromOptions(tap: tap, tapFD: tapFD, mac: mac) } catch {
            throw ValidationError(error.description)
        }
    }

    /// `--vsock-listen PORT:PATH` values, checked: a port, an absolute-or-relative path, no repeats.
    func vsockPortSockets() throws -> [(port: UInt32, path: String)] {
        var seen: Set<UInt32> = []
        return try vsockListen.map { value in
            guard let colon = value.firstIndex(of: ":"), let port = UInt32(value[..<colon]),
                !value[value.index(after: colon)...].isEmpty
            else { throw ValidationError("--vsock-listen must be PORT:PATH, not '\(value)'") }
            guard seen.insert(port).inserted else {
                throw ValidationError("--vsock-listen names guest port \(port) twice")
            }
            return (port, String(value[value.index(after: colon)...]))
        }
    }

    func output(_ value: String, option: String) throws -> VMConfig.SerialOutput {
        switch value {
        case "stdout": return .stdout
        case "none": return .none
        case let value where value.hasPrefix("file="): return .file(String(value.dropFirst(5)))
        default: throw ValidationError("--\(option) must be stdout, none or file=PATH, not '\(value)'")
        }
    }

    func run() throws {
        let log = Logger(name: "vmm", startNanoseconds: processStart)
        var config = VMConfig(kernelPath: kernel)
        config.initrdPath = initrd
        config.parameters = params.joined(separator: " ")
        config.memoryMiB = mem
        config.cpus = cpus
        config.serial = try output(serial, option: "serial")
        config.console = try console.map { try output($0, option: "console") }
        config.serialInput = !noConsoleInput
        config.controlSocket = socket
        config.sandbox = !disableSandbox
        config.vcpuAffinity = try cpuSet(vcpuAffinity)
        config.deviceAffinity = try cpuSet(deviceAffinity)
        if let cid, let vsock { config.vsock = (cid, vsock) }
        config.vsockPortSockets = try vsockPortSockets()
        config.net = try netConfig()
        config.disks = disk.map { .init(path: $0, readOnly: true) } + rwdisk.map { .init(path: $0, readOnly: false) }
        let reason: Machine.ExitReason
        do {
            let machine = try Machine(config: config, log: log)
            reason = try machine.run()
        } catch {
            log.error("\(error)")
            throw ExitCode(1)
        }
        switch reason {
        case .reset: log.info("guest rebooted; VM stopped after \(log.elapsedMilliseconds) ms")
        case .powerOff: log.info("guest powered off after \(log.elapsedMilliseconds) ms")
        case .stopped: log.info("VM stopped on request after \(log.elapsedMilliseconds) ms")
        case .guestPanicked:
            log.error("VM stopped after \(log.elapsedMilliseconds) ms: the guest kernel panicked")
            throw ExitCode(RunCommand.guestPanicExitCode)
        case .crashed(let why):
            log.error("VM crashed: \(why)")
            throw ExitCode(1)
        }
    }
}

/// When the process started, for boot-time measurements.
let processStart = Logger.now()
