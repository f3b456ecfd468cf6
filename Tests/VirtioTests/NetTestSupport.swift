import CLinux
import EventLoop
import Foundation
import GuestMemory
import Synchronization
import Testing
import VirtioDriver

@testable import Virtio

#if canImport(Glibc)
    import Glibc
#endif

/// Why a virtio-net test could not set up its host side (these tests need root and /dev/net/tun).
struct NetSetupError: Error, CustomStringConvertible {
    let description: String
}

/// One frame the device put in a receive buffer.
struct ReceivedFrame {
    /// The 12-byte virtio-net header.
    var header: [UInt8]
    /// The Ethernet frame after it.
    var frame: [UInt8]
    var usedLength: UInt32

    var etherType: UInt16 { frame.count >= 14 ? UInt16(frame[12]) << 8 | UInt16(frame[13]) : 0 }
    var numBuffers: UInt16 { UInt16(header[10]) | UInt16(header[11]) << 8 }
}

/// Names and /30 subnets for test TAPs, unique within this process (and, through the pid,
/// likely across processes).
private let tapCounter = Atomic<Int>(0)

/// The guest side of a virtio-net device on a real TAP, driven the way a Linux guest drives it:
/// a ``VirtioPCIDevice`` transport with the receive (0) and transmit (1) queues enabled, guest
/// kicks through `notify(queue:)`, and the device's ``EventLoop`` running. The host side of the
/// TAP has an address in a fresh /30 and is up, with IPv6 off so that the kernel stays quiet.
/// The TAP disappears with the harness.
final class NetHarness {
    static let queueSize: UInt16 = 256
    /// A receive buffer as Linux posts it without GUEST_TSO: the header and a 1518-byte frame.
    static let smallBuffer = 12 + 1518
    static let rxBase: UInt64 = 0x1000
    static let txBase: UInt64 = 0x4000
    static let rxData: UInt64 = 0x10_0000
    static let txData: UInt64 = 0x80_0000
    static let memorySize: UInt64 = 16 << 20

    let name: String
    let hostIP: [UInt8]
    let guestIP: [UInt8]
    let guestMAC: MACAddress
    let memory: GuestMemory
    var rx: QueueDriver
    var tx: QueueDriver
    let device: VirtioNet
    let transport: VirtioPCIDevice
    let driver: TransportDriver
    let loop: EventLoop
    /// Times the device's loop asked for a queue to be served.
    let kicks = Counter()
    let logged = Collected<String>()
    /// Receive buffers ``collect()`` keeps posted (0: the test posts them itself).
    var postedTarget: Int
    var bufferSize: Int

    private var rxChains: [UInt16: [QueueDriver.Buffer]] = [:]
    private var rxSeen: UInt16 = 0
    private var txSeen: UInt16 = 0
    private var rxPool: [UInt64] = []

    /// - Parameters:
    ///   - features: what the test driver accepts (VERSION_1 at least).
    ///   - receiveBuffers: receive buffers posted (and kept posted) from the start.
    ///   - bufferSize: the size of each receive buffer.
    init(
        features: UInt64 = VirtioFeature.version1, receiveBuffers: Int = 16, bufferSize: Int = NetHarness.smallBuffer
    ) throws {
        let index = tapCounter.add(1, ordering: .relaxed).newValue
        let pid = Int(getpid())
        name = "vmtn\(pid % 100_000)n\(index % 1000)"
        let third = UInt8(truncatingIfNeeded: pid + index / 64)
        let fourth = UInt8((index % 64) * 4)
        hostIP = [10, 213, third, fourth + 1]
        guestIP = [10, 213, third, fourth + 2]
        guestMAC = MACAddress.random()
        self.postedTarget = receiveBuffers
        self.bufferSize = bufferSize

        let tap: TapDevice
        do { tap = try TapDevice(name: name) } catch {
            throw NetSetupError(
                description:
                    "cannot create the test TAP \(name) (the virtio-net tests need root and /dev/net/tun): \(error)"
            )
        }
        // No IPv6 on the test link: no router solicitations or MLD reports in the receive queue.
        try? "1".write(toFile: "/proc/sys/net/ipv6/conf/\(name)/disable_ipv6", atomically: false, encoding: .utf8)
        try Self.runIP(["addr", "add", "\(Frames.dotted(hostIP))/30", "dev", name])
        try Self.runIP(["link", "set", name, "up"])

        memory = try makeMemory(size: Self.memorySize)
        rx = try QueueDriver(memory: memory, size: Self.queueSize, base: Self.rxBase, dataBase: Self.rxData)
        tx = try QueueDriver(memory: memory, size: Self.queueSize, base: Self.txBase, dataBase: Self.txData)
        let logged = logged
        device = VirtioNet(backend: tap, mac: guestMAC) { logged.append($0) }
        transport = VirtioPCIDevice(
            device: device, memory: memory, barAddress: 0xFE00_0000, signaler: RecordingSignaler(),
            onError: { logged.append($0) })
        driver = TransportDriver(device: transport)
        guard driver.negotiate(features) else {
            throw NetSetupError(description: "the device refused features 0x\(String(features, radix: 16))")
        }
        driver.configureQueue(0, rx)
        driver.configureQueue(1, tx)
        driver.enableQueue(0)
        driver.enableQueue(1)
        driver.driverOK()

        loop = try EventLoop(name: "net-\(index % 1000)")
        try loop.start()
        let kicks = kicks
        try device.start(on: loop) { [weak transport] queue in
            kicks.increment()
            transport?.notify(queue: queue)
        }
        if receiveBuffers > 0 {
            try postReceive(count: receiveBuffers)
            kickReceive()
        }
    }

    deinit {
        loop.stop()
    }

    /// The interface's own MAC address, as the kernel reports it.
    var hostMAC: [UInt8] {
        get throws {
            let text = try String(contentsOfFile: "/sys/class/net/\(name)/address", encoding: .utf8)
            return try MACAddress(parsing: text.trimmingCharacters(in: .whitespacesAndNewlines)).bytes
        }
    }

    // MARK: - Transmit (guest → host)

    /// Puts `header` + `frame` on the transmit queue as one readable buffer (or, with `split`,
    /// the header in one buffer and the frame in two) and kicks it; checks that the chain came
    /// back with nothing written.
    func transmit(
        _ frame: [UInt8], header: [UInt8] = [UInt8](repeating: 0, count: 12), split: Bool = false,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        if split {
            let half = frame.count / 2
            try transmitChain(
                [header, Array(frame[..<half]), Array(frame[half...])].filter { !$0.isEmpty },
                sourceLocation: sourceLocation)
        } else {
            try transmitChain([header + frame], sourceLocation: sourceLocation)
        }
    }

    /// One transmit chain of these readable buffers, kicked and checked as used.
    func transmitChain(_ pieces: [[UInt8]], sourceLocation: SourceLocation = #_sourceLocation) throws {
        var buffers: [QueueDriver.Buffer] = []
        for piece in pieces {
            let address = try tx.allocate(max(piece.count, 1))
            try memory.write(piece, at: address)
            buffers.append(.readable(address, UInt32(piece.count)))
        }
        let head = try tx.offer(buffers)
        transport.notify(queue: 1)
        // The kick was served on this thread: the chain is back already.
        #expect(try tx.usedIndex == txSeen &+ 1, "the transmit chain was not returned", sourceLocation: sourceLocation)
        let used = try tx.used(Int(txSeen))
        txSeen &+= 1
        #expect(used.id == UInt32(head), sourceLocation: sourceLocation)
        #expect(used.length == 0, sourceLocation: sourceLocation)
    }

    // MARK: - Receive (host → guest)

    /// Posts `count` writable buffers of ``bufferSize`` bytes (without kicking).
    func postReceive(count: Int, size: Int? = nil) throws {
        let size = size ?? bufferSize
        for _ in 0..<count {
            let address = size == bufferSize && !rxPool.isEmpty ? rxPool.removeLast() : try rx.allocate(size)
            let buffers = [QueueDriver.Buffer.writable(address, UInt32(size))]
            let head = try rx.offer(buffers)
            rxChains[head] = buffers
        }
    }

    /// The guest's kick on the receive queue, after it posted buffers.
    func kickReceive() { transport.notify(queue: 0) }

    /// Every receive chain the device used since the last call; tops the buffers up to
    /// ``postedTarget`` (and kicks) as a driver does.
    func collect() throws -> [ReceivedFrame] {
        var frames: [ReceivedFrame] = []
        let usedIndex = try rx.usedIndex
        while rxSeen != usedIndex {
            let element = try rx.used(Int(rxSeen))
            rxSeen &+= 1
            let head = UInt16(truncatingIfNeeded: element.id)
            guard let buffers = rxChains.removeValue(forKey: head) else {
                Issue.record("the device used receive chain \(head), which is not outstanding")
                continue
            }
            var bytes: [UInt8] = []
            for buffer in buffers where bytes.count < Int(element.length) {
                bytes += try memory.read(
                    at: buffer.address, count: min(Int(buffer.length), Int(element.length) - bytes.count))
            }
            if buffers.count == 1 && Int(buffers[0].length) == bufferSize { rxPool.append(buffers[0].address) }
            guard bytes.count >= 12 else {
                Issue.record("the device wrote \(element.length) bytes, less than the header")
                continue
            }
            frames.append(
                ReceivedFrame(header: Array(bytes[..<12]), frame: Array(bytes[12...]), usedLength: element.length))
        }
        let missing = postedTarget - rxChains.count
        if missing > 0 {
            try postReceive(count: missing)
            kickReceive()
        }
        return frames
    }

    /// Collects frames until one satisfies `match` or `timeout` seconds pass; answers the
    /// kernel's ARP requests for the guest's address on the way.
    func receive(timeout: Double = 3, where match: (ReceivedFrame) -> Bool) throws -> ReceivedFrame? {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            for frame in try collect() {
                if match(frame) { return frame }
                if let reply = Frames.arpReply(to: frame.frame, ip: guestIP, mac: guestMAC.bytes) {
                    try transmit(reply)
                }
            }
            if Date() >= deadline { return nil }
            usleep(1_000)
        }
    }

    /// Resolves the host's address the way the guest's stack would: an ARP request, and the
    /// kernel's reply. Returns the host interface's MAC.
    func resolveHost(sourceLocation: SourceLocation = #_sourceLocation) throws -> [UInt8]? {
        try transmit(Frames.arpRequest(from: guestMAC.bytes, ip: guestIP, for: hostIP))
        let reply = try receive { Frames.isARPReply($0.frame, from: self.hostIP) }
        guard let reply else {
            Issue.record("no ARP reply from \(Frames.dotted(hostIP)) on \(name)", sourceLocation: sourceLocation)
            return nil
        }
        return Array(reply.frame[6..<12])
    }

    // MARK: - The host's side of the link

    /// Whether the TAP has a frame the device has not read.
    var tapHasPendingFrames: Bool {
        var descriptor = pollfd(fd: device.backend.fd, events: Int16(POLLIN), revents: 0)
        return poll(&descriptor, 1, 0) > 0
    }

    private static func runIP(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["ip"] + arguments
        let errors = Pipe()
        process.standardError = errors
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            throw NetSetupError(
                description: "ip \(arguments.joined(separator: " ")) failed (\(process.terminationStatus)): \(message)")
        }
    }
}

/// An AF_PACKET socket on one interface: sends frames out of it (to the TAP's reader) and
/// captures the frames that come in (from the TAP's writer).
final class PacketSocket {
    static let ethPAll: UInt16 = 0x0003
    static let packetOutgoing: UInt8 = 4

    let fd: Int32

    init(interface: String) throws {
        let index = if_nametoindex(interface)
        guard index != 0 else { throw NetSetupError(description: "no interface \(interface)") }
        fd = socket(
            AF_PACKET, Int32(SOCK_RAW.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue),
            Int32(Self.ethPAll.bigEndian))
        guard fd >= 0 else {
            throw NetSetupError(description: "AF_PACKET socket: \(String(cString: strerror(errno)))")
        }
        // struct sockaddr_ll: family, protocol (network order), ifindex, hatype, pkttype, halen, addr[8].
        var address = [UInt8](repeating: 0, count: 20)
        address.storeLE(UInt16(AF_PACKET), at: 0)
        address.storeLE(Self.ethPAll.bigEndian, at: 2)
        address.storeLE(Int32(index), at: 4)
        let bound = address.withUnsafeBytes {
            bind(fd, $0.baseAddress?.assumingMemoryBound(to: sockaddr.self), socklen_t($0.count))
        }
        guard bound == 0 else {
            let code = errno
            close(fd)
            throw NetSetupError(
                description: "binding an AF_PACKET socket to \(interface): \(String(cString: strerror(code)))")
        }
    }

    deinit { close(fd) }

    /// Sends `frame` out of the interface: the TAP's reader gets it.
    func inject(_ frame: [UInt8]) throws {
        let n = frame.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        guard n == frame.count else {
            throw NetSetupError(
                description: "injecting a \(frame.count)-byte frame: \(String(cString: strerror(errno)))")
        }
    }

    /// The next frame that came in on the interface and satisfies `match`, within `timeout`.
    func capture(timeout: Double = 2, where match: ([UInt8]) -> Bool = { _ in true }) -> [UInt8]? {
        let deadline = Date().addingTimeInterval(timeout)
        var buffer = [UInt8](repeating: 0, count: 1 << 17)
        while true {
            var address = [UInt8](repeating: 0, count: 20)
            var length = socklen_t(address.count)
            let n = buffer.withUnsafeMutableBytes { data in
                address.withUnsafeMutableBytes {
                    recvfrom(
                        fd, data.baseAddress, data.count, 0, $0.baseAddress?.assumingMemoryBound(to: sockaddr.self),
                        &length)
                }
            }
            if n > 0 {
                // Skip what the host itself sends out (pkttype PACKET_OUTGOING).
                let frame = Array(buffer[0..<n])
                if address[10] != Self.packetOutgoing && match(frame) { return frame }
                continue
            }
            let left = deadline.timeIntervalSinceNow
            guard left > 0 else { return nil }
            _ = Host.wait(fd, Int16(POLLIN), timeout: left)
        }
    }
}

/// Ethernet, ARP, IPv4 and ICMP frames for the test guest.
enum Frames {
    static let broadcast = [UInt8](repeating: 0xFF, count: 6)
    static let arp: UInt16 = 0x0806
    static let ipv4: UInt16 = 0x0800
    /// IEEE 802 local experimental EtherType: frames the host's stack ignores.
    static let experimental: UInt16 = 0x88B5

    static func dotted(_ ip: [UInt8]) -> String { ip.map(String.init).joined(separator: ".") }

    static func ethernet(to destination: [UInt8], from source: [UInt8], type: UInt16, _ payload: [UInt8]) -> [UInt8] {
        destination + source + [UInt8(type >> 8), UInt8(type & 0xFF)] + payload
    }

    /// "Who has `target`? Tell `ip`."
    static func arpRequest(from mac: [UInt8], ip: [UInt8], for target: [UInt8]) -> [UInt8] {
        ethernet(
            to: broadcast, from: mac, type: arp,
            [0, 1, 8, 0, 6, 4, 0, 1] + mac + ip + [UInt8](repeating: 0, count: 6) + target)
    }

    static func isARPReply(_ frame: [UInt8], from ip: [UInt8]) -> Bool {
        frame.count >= 42 && frame[12] == 0x08 && frame[13] == 0x06 && frame[20] == 0 && frame[21] == 2
            && Array(frame[28..<32]) == ip
    }

    /// The guest's answer when `frame` is an ARP request for `ip`.
    static func arpReply(to frame: [UInt8], ip: [UInt8], mac: [UInt8]) -> [UInt8]? {
        guard frame.count >= 42, frame[12] == 0x08, frame[13] == 0x06, frame[21] == 1, Array(frame[38..<42]) == ip
        else { return nil }
        let asker = Array(frame[22..<28])
        let askerIP = Array(frame[28..<32])
        return ethernet(to: asker, from: mac, type: arp, [0, 1, 8, 0, 6, 4, 0, 2] + mac + ip + asker + askerIP)
    }

    /// An ICMP echo request from `source` to `destination` with `payload`.
    static func echoRequest(
        to mac: [UInt8], from guestMAC: [UInt8], source: [UInt8], destination: [UInt8], id: UInt16, sequence: UInt16,
        payload: [UInt8]
    ) -> [UInt8] {
        var icmp: [UInt8] = [
            8, 0, 0, 0, UInt8(id >> 8), UInt8(id & 0xFF), UInt8(sequence >> 8), UInt8(sequence & 0xFF),
        ]
        icmp += payload
        let icmpSum = checksum(icmp)
        icmp[2] = UInt8(icmpSum >> 8)
        icmp[3] = UInt8(icmpSum & 0xFF)
        let total = 20 + icmp.count
        var ip: [UInt8] = [0x45, 0, UInt8(total >> 8), UInt8(total & 0xFF), 0x12, 0x34, 0x40, 0, 64, 1, 0, 0]
        ip += source + destination
        let ipSum = checksum(ip)
        ip[10] = UInt8(ipSum >> 8)
        ip[11] = UInt8(ipSum & 0xFF)
        return ethernet(to: mac, from: guestMAC, type: ipv4, ip + icmp)
    }

    /// Whether `frame` is an ICMP echo reply from `source` with this id and sequence; returns its payload.
    static func echoReplyPayload(_ frame: [UInt8], from source: [UInt8], id: UInt16, sequence: UInt16) -> [UInt8]? {
        guard frame.count >= 42, frame[12] == 0x08, frame[13] == 0x00, frame[23] == 1, Array(frame[26..<30]) == source
        else { return nil }
        let headerLength = Int(frame[14] & 0x0F) * 4
        let icmp = Array(frame[(14 + headerLength)...])
        guard icmp.count >= 8, icmp[0] == 0, icmp[4..<6] == [UInt8(id >> 8), UInt8(id & 0xFF)],
            icmp[6..<8] == [UInt8(sequence >> 8), UInt8(sequence & 0xFF)], checksum(icmp) == 0
        else { return nil }
        return Array(icmp[8...])
    }

    /// The Internet checksum (RFC 1071).
    static func checksum(_ bytes: [UInt8]) -> UInt16 {
        var sum: UInt32 = 0
        var i = 0
        while i + 1 < bytes.count {
            sum += UInt32(bytes[i]) << 8 | UInt32(bytes[i + 1])
            i += 2
        }
        if i < bytes.count { sum += UInt32(bytes[i]) << 8 }
        while sum >> 16 != 0 { sum = (sum & 0xFFFF) + (sum >> 16) }
        return ~UInt16(sum)
    }
}
