import ArgumentParser
import DBus
import Dispatch
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// `vmtoolsctl start NAME`: StartVm, with progress while the guest comes up.
struct Start: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start a VM and wait until its guest is up and configured.",
        discussion: """
            Boots the image (default: "default" under /var/lib/vmtools/images) or the kernel you name, \
            with a /30 network on a TAP and the guest agent configured. Disks are names from \
            `vmtoolsctl disk list` or paths; the first disk is /dev/vda.
            """)

    @OptionGroup var bus: BusOptions

    @Argument(help: "The VM's name (letters, digits, '-', '_').")
    var name: String

    @Option(help: "Guest image name.")
    var image: String?

    @Option(help: "Kernel to boot instead of the image's (bzImage or vmlinux).")
    var kernel: String?

    @Option(help: "Initramfs to go with --kernel.")
    var initrd: String?

    @Option(help: "Virtual CPUs.")
    var cpus: UInt32?

    @Option(name: [.customLong("mem"), .customLong("memory")], help: "Memory in MiB.")
    var memoryMiB: UInt32?

    @Option(name: .customLong("disk"), help: "A read-only disk: a disk image name or a path (repeatable).")
    var disks: [String] = []

    @Option(name: .customLong("writable-disk"), help: "A writable disk (repeatable), after the read-only ones.")
    var writableDisks: [String] = []

    @Option(help: "The guest's root device (maitred.root=), such as /dev/vda.")
    var root: String?

    @Option(help: "Extra kernel command line.")
    var params: String?

    @Option(help: "Seconds the guest may take to come up.")
    var timeout: UInt32?

    @Option(
        name: .customLong("mojo-channel"),
        help: ArgumentHelp(
            "N:GUEST_SOCKET:HOST_SOCKET: mojo-proxy joins the guest's clients of GUEST_SOCKET to the host's listener at HOST_SOCKET, passed descriptors included (repeatable).",
            valueName: "channel"))
    var mojoChannels: [String] = []

    @Flag(help: "Print the VM's record as JSON.")
    var json = false

    /// StartVm's options, only those given.
    var options: [String: DBusValue] {
        var options: [String: DBusValue] = [:]
        if let image { options["image"] = .string(image) }
        if let kernel { options["kernel"] = .string(kernel) }
        if let initrd { options["initrd"] = .string(initrd) }
        if let cpus { options["cpus"] = .uint32(cpus) }
        if let memoryMiB { options["memory_mib"] = .uint32(memoryMiB) }
        if !disks.isEmpty { options["disks"] = .array(element: "s", disks.map { .string($0) }) }
        if !writableDisks.isEmpty {
            options["writable_disks"] = .array(element: "s", writableDisks.map { .string($0) })
        }
        if let root { options["root"] = .string(root) }
        if let params { options["params"] = .string(params) }
        if let timeout { options["timeout_s"] = .uint32(timeout) }
        if !mojoChannels.isEmpty {
            options["mojo_channels"] = .array(element: "(uss)", mojoChannels.compactMap(Self.mojoChannel))
        }
        return options
    }

    /// `N:GUEST_SOCKET:HOST_SOCKET` as StartVm's `(uss)`; nil when it is not that.
    static func mojoChannel(_ text: String) -> DBusValue? {
        let parts = text.split(separator: ":", maxSplits: 2).map(String.init)
        guard parts.count == 3, let number = UInt32(parts[0]), number > 0 else { return nil }
        return .structure([.uint32(number), .string(parts[1]), .string(parts[2])])
    }

    func validate() throws {
        for channel in mojoChannels where Self.mojoChannel(channel) == nil {
            throw ValidationError("--mojo-channel \(channel): expected N:GUEST_SOCKET:HOST_SOCKET with N > 0")
        }
    }

    mutating func run() async throws {
        let concierge = try await bus.concierge()
        let progress = Progress(label: "starting \(name)")
        // concierge's own start timeout (120 s unless given) plus room for teardown.
        let limit = Duration.seconds(Int(timeout ?? 120) + 60)
        let reply: [DBusValue]
        do {
            reply = try await concierge.call("StartVm", [.string(name), .options(options)], timeout: limit)
        } catch {
            progress.finish(nil)
            throw error
        }
        let info = try ConciergeClient.record(reply.first ?? .options([:]))
        progress.finish("started \(name)")
        if json {
            Output.printJSON(info.mapValues(\.json))
        } else {
            print(VMRecord.summary(info))
        }
    }
}

/// Elapsed seconds on stderr while a long call runs, when stderr is a terminal.
final class Progress {
    private let timer: (any DispatchSourceTimer)?
    private let label: String
    private let started = DispatchTime.now()

    init(label: String) {
        self.label = label
        guard isatty(2) == 1 else {
            timer = nil
            return
        }
        let timer = DispatchSource.makeTimerSource(queue: .global())
        let started = self.started
        timer.schedule(deadline: .now(), repeating: .seconds(1))
        timer.setEventHandler {
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1e9
            writeOut(Array("\r\u{1B}[K\(label)… \(String(format: "%.0f", seconds)) s".utf8), to: 2)
        }
        timer.resume()
        self.timer = timer
    }

    /// Stops the ticker; `done` replaces it with a final line (nil: just clear it).
    func finish(_ done: String?) {
        guard let timer else { return }
        timer.cancel()
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - started.uptimeNanoseconds) / 1e9
        let line = done.map { "\($0) in \(String(format: "%.1f", seconds)) s\n" } ?? ""
        writeOut(Array("\r\u{1B}[K\(line)".utf8), to: 2)
    }
}
