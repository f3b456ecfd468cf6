// vsock-probe: drives vmm's virtio-vsock device from a simulated Linux driver on this machine,
// with no VM, to measure what the device itself costs per byte. The device runs as in vmm: on
// its own event-loop thread, its queues served when a doorbell eventfd fires, its host side a
// real Unix socket with a real client. The "guest" lays out its queues as Linux 6.1 does (receive
// chains of a 44-byte header buffer and a 4 KiB data buffer; credit updates once less than
// 64 KiB of the 256 KiB window is left). A test tool, not shipped; tools/bench-vsock-device runs it.
//
//   vsock-probe [MIB] [to|from]   MIB (default 1024) host → guest (to) or guest → host (from);
//                                 prints MiB/s, and the device thread's CPU time and wake-ups
//                                 per MiB
import EventLoop
import GuestMemory
import Synchronization
import Virtio
import VirtioDriver

#if canImport(Glibc)
    import Glibc
#endif

// MARK: - Plumbing

func fail(_ message: String) -> Never {
    let line = "vsock-probe: \(message)\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
    exit(2)
}

func say(_ line: String) {
    let text = line + "\n"
    _ = text.withCString { write(1, $0, strlen($0)) }
}

func nowSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}

/// CPU seconds (user + system) of this process's thread named `name`, and how many times it
/// went to sleep and was woken (its voluntary context switches), from /proc.
func threadStats(named name: String) -> (cpuSeconds: Double, wakeups: Int) {
    guard let directory = opendir("/proc/self/task") else { return (0, 0) }
    defer { closedir(directory) }
    let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
    while let entry = readdir(directory) {
        let tid = withUnsafeBytes(of: entry.pointee.d_name) {
            String(cString: $0.bindMemory(to: CChar.self).baseAddress!)
        }
        guard tid.first?.isNumber == true else { continue }
        guard let stat = readText("/proc/self/task/\(tid)/stat"), let close = stat.lastIndex(of: ")") else { continue }
        let comm = stat[stat.index(after: stat.firstIndex(of: "(")!)..<close]
        guard comm == name else { continue }
        // Fields after the command: state is field 3; utime and stime are fields 14 and 15.
        let fields = stat[stat.index(close, offsetBy: 2)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return (0, 0) }
        let status = readText("/proc/self/task/\(tid)/status") ?? ""
        let switches = status.split(separator: "\n").first { $0.hasPrefix("voluntary_ctxt_switches:") }
        let wakeups = switches.flatMap { Int($0.split(separator: "\t").last ?? "") } ?? 0
        return ((user + system) / ticks, wakeups)
    }
    return (0, 0)
}

func readText(_ path: String) -> String? {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes = [UInt8](repeating: 0, count: 4096)
    let n = read(fd, &bytes, bytes.count)
    return n > 0 ? String(decoding: bytes[..<n], as: UTF8.self) : nil
}

func writeAll(_ fd: Int32, _ pointer: UnsafeRawPointer, _ count: Int) -> Bool {
    var done = 0
    while done < count {
        let n = write(fd, pointer + done, count - done)
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return false }
        done += n
    }
    return true
}

// MARK: - The device, as vmm runs it

/// The device and its queues on an event-loop thread; the guest rings doorbells and waits for
/// interrupts through eventfds, as it would through ioeventfd and irqfd.
final class DeviceSide: Sendable {
    static let loopName = "vsock-device"
    let device: VirtioVsock
    let memory: GuestMemory
    let queues: Mutex<[Virtqueue]>
    let loop: EventLoop
    let doorbells: [EventFD]
    let interrupt: EventFD

    init(memory: GuestMemory, queues: [Virtqueue], socketPath: String) throws {
        self.memory = memory
        self.queues = Mutex(queues)
        device = try VirtioVsock(guestCID: 3, socketPath: socketPath) { say("device: \($0)") }
        loop = try EventLoop(name: Self.loopName)
        doorbells = try queues.indices.map { _ in try EventFD() }
        interrupt = try EventFD()
        // As vmm's QueueDoorbells: edge-triggered, never read.
        for (index, bell) in doorbells.enumerated() {
            try loop.add(bell.fd, interest: [.readable, .edgeTriggered]) { [self] _ in
                serve(index)
                return .keep
            }
        }
        try device.start(on: loop) { [self] index in serve(index) }
        try loop.start()
    }

    /// What the transport's notify(queue:) does: process, then interrupt if anything was used.
    func serve(_ index: Int) {
        let used = queues.withLock { queues -> Bool in
            do { return try device.process(queue: index, &queues[index], memory: memory) } catch {
                fail("queue \(index): \(error)")
            }
        }
        if used { interrupt.signal() }
    }
}

// MARK: - The guest driver

/// A Linux-like vsock driver: 128 receive chains kept posted, transmit chains reclaimed as used.
struct GuestDriver {
    static let receiveChains = 128
    static let dataSize = 4096
    static let window: UInt32 = 256 << 10
    static let maxTransmitPayload = 64 << 10
    static let rxBase: UInt64 = 0x1000
    static let txBase: UInt64 = 0x8000
    static let eventBase: UInt64 = 0xF000
    static let rxHeaders: UInt64 = 0x10_0000
    static let rxData: UInt64 = 0x20_0000
    static let txHeaders: UInt64 = 0x80_0000
    static let txData: UInt64 = 0x100_0000
    static let memorySize: UInt64 = 0x900_0000

    let memory: GuestMemory
    var rx: QueueDriver
    var tx: QueueDriver
    var rxSeen: UInt16 = 0
    var txSeen: UInt16 = 0
    var freeTransmit: [UInt16] = Array(0..<128)

    init(memory: GuestMemory) throws {
        self.memory = memory
        rx = try QueueDriver(memory: memory, size: 256, base: Self.rxBase)
        tx = try QueueDriver(memory: memory, size: 256, base: Self.txBase)
        for chain in 0..<Self.receiveChains {
            let head = try rx.addChain(
                [
                    .writable(Self.rxHeaders + 64 * UInt64(chain), UInt32(VsockHeader.size)),
                    .writable(Self.rxData + UInt64(Self.dataSize * chain), UInt32(Self.dataSize)),
                ], at: [UInt16(2 * chain), UInt16(2 * chain + 1)])
            try rx.publish(head)
        }
    }

    func queues() throws -> [Virtqueue] {
        let event = try QueueDriver(memory: memory, size: 64, base: Self.eventBase)
        return [try rx.deviceQueue(), try tx.deviceQueue(), try event.deviceQueue(maxSize: 64)]
    }

    /// The next packet the device put in a receive buffer, and its chain's head (to repost).
    mutating func nextReceived() throws -> (header: VsockHeader, head: UInt16)? {
        guard rxSeen != (try rx.usedIndex) else { return nil }
        let element = try rx.used(Int(rxSeen))
        rxSeen &+= 1
        let head = UInt16(truncatingIfNeeded: element.id)
        let raw = try memory.buffer(at: Self.rxHeaders + 64 * UInt64(head / 2), count: VsockHeader.size)
        guard let header = VsockHeader(UnsafeRawBufferPointer(raw)) else { fail("short header") }
        return (header, head)
    }

    mutating func repost(_ head: UInt16) throws { try rx.publish(head) }

    /// Queues a packet (header, and `payload` bytes from the transmit data area); false when no
    /// transmit chain is free.
    mutating func transmit(_ header: VsockHeader, payload: Int = 0) throws -> Bool {
        reclaimTransmit()
        guard let slot = freeTransmit.popLast() else { return false }
        let headerAddress = Self.txHeaders + 64 * UInt64(slot)
        header.store(into: try memory.buffer(at: headerAddress, count: VsockHeader.size))
        var buffers: [QueueDriver.Buffer] = [.readable(headerAddress, UInt32(VsockHeader.size))]
        var indices = [2 * slot]
        if payload > 0 {
            buffers.append(.readable(Self.txData + UInt64(Self.maxTransmitPayload) * UInt64(slot), UInt32(payload)))
            indices.append(2 * slot + 1)
        }
        try tx.publish(try tx.addChain(buffers, at: indices))
        return true
    }

    mutating func reclaimTransmit() {
        while let used = try? tx.usedIndex, txSeen != used {
            guard let element = try? tx.used(Int(txSeen)) else { return }
            txSeen &+= 1
            freeTransmit.append(UInt16(truncatingIfNeeded: element.id) / 2)
        }
    }
}

// MARK: - Runs

let arguments = CommandLine.arguments
let mib = arguments.count > 1 ? Int(arguments[1]) ?? 1024 : 1024
let direction = arguments.count > 2 ? arguments[2] : "to"
guard direction == "to" || direction == "from" else { fail("direction must be to or from") }
let total = mib << 20
let guestPort: UInt32 = 1235
let socketPath = "/tmp/vsock-probe-\(getpid()).sock"

/// One run: the guest driver and the device it drives.
final class Probe {
    var guest: GuestDriver
    let side: DeviceSide

    init() throws {
        let memory = try GuestMemory(ranges: [(0, GuestDriver.memorySize)])
        guest = try GuestDriver(memory: memory)
        side = try DeviceSide(memory: memory, queues: try guest.queues(), socketPath: socketPath)
    }

    func header(_ op: VsockHeader.Op, hostPort: UInt32, length: Int = 0, flags: UInt32 = 0, forwarded: UInt32)
        -> VsockHeader
    {
        VsockHeader(
            sourceCID: 3, destinationCID: 2, sourcePort: guestPort, destinationPort: hostPort, length: UInt32(length),
            op: op, flags: flags, bufferAllocation: GuestDriver.window, forwardCount: forwarded)
    }

    /// Waits for the next interrupt; fails after 5 s without one.
    func waitForInterrupt() {
        var poller = pollfd(fd: side.interrupt.fd, events: Int16(POLLIN), revents: 0)
        guard poll(&poller, 1, 5000) == 1 else { fail("no interrupt for 5 s: the stream stalled") }
        _ = side.interrupt.drain()
    }

    func kick(_ queue: Int) { side.doorbells[queue].signal() }

    /// Host → guest: a host client writes `total` bytes in 64 KiB writes; the guest takes them.
    func runToGuest() throws -> Double {
        let client = try UnixSocket.connect(to: socketPath)
        _ = fcntl(client, F_SETFL, fcntl(client, F_GETFL) & ~O_NONBLOCK)
        let connect = Array("CONNECT \(guestPort)\n".utf8)
        guard writeAll(client, connect, connect.count) else { fail("CONNECT") }
        var start = 0.0
        var writer: HostThread?
        var hostPort: UInt32 = 0
        var forwarded: UInt32 = 0
        /// Payload taken, which unlike the wire counter does not wrap at 4 GiB.
        var received = 0
        var announced: UInt32 = 0
        kick(0)
        while received < total || writer == nil {
            waitForInterrupt()
            var reposted = false
            while let (packet, head) = try guest.nextReceived() {
                switch packet.knownOp {
                case .request:
                    hostPort = packet.sourcePort
                    while !(try guest.transmit(header(.response, hostPort: hostPort, forwarded: 0))) {
                        waitForInterrupt()
                    }
                    kick(1)
                    start = nowSeconds()
                    writer = try HostThread(name: "host-writer") {
                        var ok = [UInt8](repeating: 0, count: 32)
                        _ = read(client, &ok, ok.count)
                        let chunk = [UInt8](repeating: 0x5A, count: 64 << 10)
                        var left = total
                        while left > 0 {
                            guard writeAll(client, chunk, min(left, chunk.count)) else { fail("host write") }
                            left -= chunk.count
                        }
                    }
                case .rw:
                    forwarded &+= packet.length
                    received += Int(packet.length)
                case .creditRequest, .creditUpdate, .shutdown: break
                default: fail("unexpected packet \(packet)")
                }
                try guest.repost(head)
                reposted = true
            }
            if forwarded &- announced > GuestDriver.window - (64 << 10) {
                if try guest.transmit(header(.creditUpdate, hostPort: hostPort, forwarded: forwarded)) {
                    announced = forwarded
                    kick(1)
                }
            }
            if reposted { kick(0) }
        }
        let elapsed = nowSeconds() - start
        writer?.join()
        close(client)
        return elapsed
    }

    /// Guest → host: the guest sends `total` bytes in 64 KiB packets within the device's credit; a
    /// host service reads them.
    func runFromGuest() throws -> Double {
        let hostPort: UInt32 = 1236
        let listener = try UnixSocket.listen(at: "\(socketPath)_\(hostPort)")
        defer { unlink("\(socketPath)_\(hostPort)") }
        let received = Atomic<Int>(0)
        let reader = try HostThread(name: "host-reader") {
            var pollfd = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
            _ = poll(&pollfd, 1, 5000)
            guard let fd = UnixSocket.accept(listener) else { fail("the device did not connect") }
            let flags = fcntl(fd, F_GETFL)
            _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK)
            var buffer = [UInt8](repeating: 0, count: 256 << 10)
            while true {
                let n = read(fd, &buffer, buffer.count)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                received.add(n, ordering: .relaxed)
            }
            close(fd)
        }
        guard try guest.transmit(header(.request, hostPort: hostPort, forwarded: 0)) else { fail("transmit") }
        kick(1)
        var peerWindow: UInt32 = 0
        var peerForwarded: UInt32 = 0
        var sent = 0
        var established = false
        let start = nowSeconds()
        while sent < total {
            if established {
                var queued = false
                while sent < total {
                    let credit = Int(peerWindow &- (UInt32(truncatingIfNeeded: sent) &- peerForwarded))
                    let length = min(GuestDriver.maxTransmitPayload, total - sent, credit)
                    guard length > 0,
                        try guest.transmit(
                            header(.rw, hostPort: hostPort, length: length, forwarded: 0), payload: length)
                    else { break }
                    sent += length
                    queued = true
                }
                if queued { kick(1) }
                if sent == total { break }
            }
            waitForInterrupt()
            while let (packet, head) = try guest.nextReceived() {
                switch packet.knownOp {
                case .response: established = true
                case .creditUpdate, .rw: break
                default: fail("unexpected packet \(packet)")
                }
                peerWindow = packet.bufferAllocation
                peerForwarded = packet.forwardCount
                try guest.repost(head)
            }
            kick(0)
        }
        while !(try guest.transmit(header(.shutdown, hostPort: hostPort, flags: 3, forwarded: 0))) {
            waitForInterrupt()
        }
        kick(1)
        reader.join()
        let elapsed = nowSeconds() - start
        close(listener)
        guard received.load(ordering: .relaxed) == total else {
            fail("the host received \(received.load(ordering: .relaxed)) of \(total) bytes")
        }
        return elapsed
    }
}

defer { unlink(socketPath) }
do {
    let probe = try Probe()
    let elapsed = direction == "to" ? try probe.runToGuest() : try probe.runFromGuest()
    let (cpu, wakeups) = threadStats(named: DeviceSide.loopName)
    let rate = Double(mib) / elapsed
    let label = direction == "to" ? "host→guest" : "guest→host"
    say(
        "vsock-probe: \(label) \(mib) MiB in \(String(format: elapsed)) s: \(Int(rate)) MiB/s; "
            + "device thread \(Int(cpu * 1e6 / Double(mib))) µs CPU per MiB, "
            + "\(String(format: Double(wakeups) / Double(mib))) wake-ups per MiB")
} catch {
    fail("\(error)")
}

extension String {
    init(format seconds: Double) { self = "\(Double(Int(seconds * 1000)) / 1000)" }
}
