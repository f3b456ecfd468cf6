import CLinux
import Foundation
import GuestMemory
import Testing

@testable import Virtio

#if canImport(Glibc)
    import Glibc
#endif

/// virtio-net on a real TAP: a test guest on the receive (0) and transmit (1) queues through the
/// PCI transport, the device's event loop running, and the host kernel's network stack on the
/// other side of the TAP. These tests need root and /dev/net/tun, and fail without them.
@Suite("virtio-net")
struct VirtioNetTests {
    /// Bits 0, 1, 5, 7, 8, 9, 11, 12, 13 and 16.
    static let offeredFeatures: UInt64 = 0x1_3BA3
    /// A unicast MAC nobody on the test link has.
    static let stranger: [UInt8] = [0x02, 0, 0, 0, 0, 0x99]

    /// A frame of the local experimental EtherType, which the host's stack ignores.
    static func experimentalFrame(to destination: [UInt8], from source: [UInt8], length: Int, seed: Int = 0) -> [UInt8]
    {
        Frames.ethernet(to: destination, from: source, type: Frames.experimental, pattern(length - 14, seed: seed))
    }

    static func isExperimental(_ frame: [UInt8]) -> Bool {
        frame.count >= 14 && frame[12] == 0x88 && frame[13] == 0xB5
    }

    // MARK: - Identity

    @Test("device type 1, an Ethernet controller with two queues of 256; config space: the MAC, then LINK_UP")
    func identity() throws {
        let harness = try NetHarness(receiveBuffers: 0)
        #expect(harness.device.deviceType == 1)
        #expect(harness.device.queueMaxSizes == [256, 256])
        #expect(harness.transport.readConfig(offset: 0x02, count: 2) == 0x1041)
        #expect(harness.transport.readConfig(offset: 0x08, count: 4) >> 8 == 0x02_0000)
        let mac = harness.guestMAC.bytes
        let config = (0..<16).map { UInt8(harness.driver.read(TransportDriver.deviceConfig + $0, 1)) }
        #expect(Array(config[0..<6]) == mac)
        #expect(config[6] == 1 && config[7] == 0, "status should read VIRTIO_NET_S_LINK_UP")
        #expect(config[8...].allSatisfy { $0 == 0 })
        // A wider read across the end of the MAC and the status.
        let wide = harness.driver.read(TransportDriver.deviceConfig + 4, 4)
        #expect(wide == UInt64(mac[4]) | UInt64(mac[5]) << 8 | 1 << 16)
    }

    @Test("offers MAC, STATUS and checksum/TSO offloads both ways; no mergeable buffers, control queue or multiqueue")
    func features() throws {
        let harness = try NetHarness(receiveBuffers: 0)
        let offered = harness.driver.deviceFeatures()
        #expect(offered == Self.offeredFeatures | VirtioFeature.version1 | VirtioFeature.eventIndex)
        #expect(offered & (1 << 15) == 0, "VIRTIO_NET_F_MRG_RXBUF must not be offered")
        #expect(offered & (1 << 17) == 0, "no control queue")
        #expect(offered & (1 << 22) == 0, "no multiqueue")
    }

    /// Receive features a driver accepts, and the TAP offloads they allow.
    struct OffloadCase: Sendable, CustomTestStringConvertible {
        let features: UInt64
        let expected: TapOffload
        var testDescription: String { "features 0x\(String(features, radix: 16))" }
    }

    static let offloadCases: [OffloadCase] = {
        let f = VirtioNet.Feature.self
        let all: UInt64 = f.guestCsum | f.guestTSO4 | f.guestTSO6 | f.guestECN
        return [
            OffloadCase(features: all, expected: [.checksum, .tso4, .tso6, .tsoECN]),
            OffloadCase(features: f.guestCsum | f.guestTSO4, expected: [.checksum, .tso4]),
            OffloadCase(features: f.guestCsum | f.guestECN, expected: [.checksum]),
            OffloadCase(features: f.guestCsum, expected: [.checksum]),
            OffloadCase(features: f.guestTSO4, expected: []),
            OffloadCase(features: f.csum | f.hostTSO4 | f.mac, expected: []),
        ]
    }()

    @Test(
        "the receive offloads the driver accepts are set on the TAP; a reset takes them back", arguments: offloadCases)
    func offloads(case: OffloadCase) throws {
        let harness = try NetHarness(features: VirtioFeature.version1 | `case`.features, receiveBuffers: 0)
        #expect(harness.device.offload == `case`.expected)
        #expect(harness.logged.values.isEmpty, "\(harness.logged.values)")
        harness.driver.setStatus(0)
        #expect(harness.device.offload == [])
    }

    // MARK: - Guest → host

    @Test("a frame the guest transmits reaches the host interface byte for byte", arguments: [false, true])
    func transmit(split: Bool) throws {
        let harness = try NetHarness(receiveBuffers: 0)
        let capture = try PacketSocket(interface: harness.name)
        let frame = Self.experimentalFrame(to: Self.stranger, from: harness.guestMAC.bytes, length: 114)
        try harness.transmit(frame, split: split)
        #expect(capture.capture(where: Self.isExperimental) == frame)
        let counters = harness.device.counters
        #expect(counters.transmittedPackets == 1)
        #expect(counters.transmittedBytes == 114)
        #expect(counters.transmitDropped == 0)
    }

    @Test(
        "transmit chains shorter than the header or over 64 KiB are dropped, logged once, and the queue goes on",
        arguments: [0, 4, 11, 12 + VirtioNet.maxFrameLength + 1])
    func badTransmit(length: Int) throws {
        let harness = try NetHarness(receiveBuffers: 0)
        let capture = try PacketSocket(interface: harness.name)
        try harness.transmitChain([[UInt8](repeating: 0, count: length)])
        try harness.transmitChain([[UInt8](repeating: 0, count: length)])
        #expect(harness.device.counters.transmitDropped == 2)
        #expect(harness.device.counters.transmittedPackets == 0)
        let logged = harness.logged.values
        #expect(logged.count == 1 && logged.first?.contains("dropped") == true, "\(logged)")
        let frame = Self.experimentalFrame(to: Self.stranger, from: harness.guestMAC.bytes, length: 60)
        try harness.transmit(frame)
        #expect(capture.capture(where: Self.isExperimental) == frame)
        #expect(harness.device.counters.transmittedPackets == 1)
        #expect(harness.driver.status & VirtioStatus.needsReset == 0)
    }

    // MARK: - Through the host's stack

    @Test("the guest's ARP request for the host's address gets the kernel's reply in a receive buffer")
    func arp() throws {
        let harness = try NetHarness()
        let mac = harness.guestMAC.bytes
        try harness.transmit(Frames.arpRequest(from: mac, ip: harness.guestIP, for: harness.hostIP))
        let hostMAC = try harness.hostMAC
        guard let reply = try harness.receive(where: { Frames.isARPReply($0.frame, from: harness.hostIP) }) else {
            Issue.record("no ARP reply from \(Frames.dotted(harness.hostIP)) on \(harness.name)")
            return
        }
        #expect(Array(reply.frame[0..<6]) == mac)
        #expect(Array(reply.frame[6..<12]) == hostMAC)
        #expect(Array(reply.frame[22..<28]) == hostMAC)
        #expect(Array(reply.frame[32..<38]) == mac)
        #expect(Array(reply.frame[38..<42]) == harness.guestIP)
        #expect(reply.header[0..<10].allSatisfy { $0 == 0 }, "no offload flags on a plain frame: \(reply.header)")
        #expect(reply.numBuffers == 1)
        #expect(Int(reply.usedLength) == 12 + reply.frame.count)
        let counters = harness.device.counters
        #expect(counters.transmittedPackets == 1 && counters.transmittedBytes == 42)
        #expect(counters.receivedPackets >= 1 && counters.receiveDropped == 0)
    }

    @Test("an ICMP echo request through the TAP gets the host's echo reply")
    func ping() throws {
        let harness = try NetHarness()
        guard let hostMAC = try harness.resolveHost() else { return }
        let payload = pattern(56, seed: 3)
        for sequence in UInt16(1)...3 {
            try harness.transmit(
                Frames.echoRequest(
                    to: hostMAC, from: harness.guestMAC.bytes, source: harness.guestIP, destination: harness.hostIP,
                    id: 0x4242, sequence: sequence, payload: payload))
            let reply = try harness.receive {
                Frames.echoReplyPayload($0.frame, from: harness.hostIP, id: 0x4242, sequence: sequence) != nil
            }
            #expect(
                reply.flatMap {
                    Frames.echoReplyPayload($0.frame, from: harness.hostIP, id: 0x4242, sequence: sequence)
                }
                    == payload, "no echo reply \(sequence)")
        }
    }

    // MARK: - Host → guest

    @Test("without receive buffers the TAP is left unread and unwatched; its frames arrive in order once buffers come")
    func noReceiveBuffers() throws {
        let harness = try NetHarness(receiveBuffers: 0)
        harness.postedTarget = 0
        let injector = try PacketSocket(interface: harness.name)
        let mac = harness.guestMAC.bytes
        let first = Self.experimentalFrame(to: mac, from: Self.stranger, length: 64, seed: 1)
        let second = Self.experimentalFrame(to: mac, from: Self.stranger, length: 80, seed: 2)
        try injector.inject(first)
        #expect(eventually { harness.kicks.count >= 1 && !harness.device.isWatchingBackend })
        try injector.inject(second)
        // Absence of activity needs a wait: nothing may be served, and the loop must not spin.
        let settled = harness.kicks.count
        usleep(100_000)
        #expect(harness.kicks.count == settled, "the device kept serving a TAP it had no buffers for")
        #expect(harness.tapHasPendingFrames)
        #expect(harness.device.counters.receivedPackets == 0)

        try harness.postReceive(count: 4)
        harness.kickReceive()
        var frames: [ReceivedFrame] = []
        #expect(
            try eventually {
                frames += try harness.collect()
                return frames.count >= 2
            })
        #expect(frames.map(\.frame) == [first, second])
        #expect(harness.device.isWatchingBackend)
        #expect(!harness.tapHasPendingFrames)
        // Watched again: the next frame is delivered without a kick from the guest.
        let third = Self.experimentalFrame(to: mac, from: Self.stranger, length: 70, seed: 3)
        try injector.inject(third)
        #expect(
            try eventually {
                frames += try harness.collect()
                return frames.count >= 3
            })
        #expect(frames.last?.frame == third)
        #expect(harness.device.counters.receivedPackets == 3)
    }

    @Test("a frame larger than the posted receive buffer is dropped and counted; the buffer takes the next one")
    func receiveTooLarge() throws {
        let harness = try NetHarness(receiveBuffers: 0)
        harness.postedTarget = 0
        try harness.postReceive(count: 1, size: 12 + 100)
        harness.kickReceive()
        let injector = try PacketSocket(interface: harness.name)
        let mac = harness.guestMAC.bytes
        try injector.inject(Self.experimentalFrame(to: mac, from: Self.stranger, length: 200))
        #expect(eventually { harness.device.counters.receiveDropped == 1 })
        #expect(try harness.collect().isEmpty)
        let small = Self.experimentalFrame(to: mac, from: Self.stranger, length: 60, seed: 5)
        try injector.inject(small)
        var frames: [ReceivedFrame] = []
        #expect(
            try eventually {
                frames += try harness.collect()
                return !frames.isEmpty
            })
        #expect(frames.map(\.frame) == [small])
        #expect(harness.device.counters.receivedPackets == 1)
        #expect(harness.device.counters.receiveDropped == 1)
        let drops = harness.logged.values.filter { $0.contains("dropped") }
        #expect(drops.count == 1, "\(harness.logged.values)")
    }

    @Test("a receive buffer that cannot hold the header breaks the queue (NEEDS_RESET), not the VMM")
    func receiveBufferWithoutRoom() throws {
        let harness = try NetHarness(receiveBuffers: 0)
        harness.postedTarget = 0
        try harness.postReceive(count: 1, size: 8)
        harness.kickReceive()
        let injector = try PacketSocket(interface: harness.name)
        try injector.inject(Self.experimentalFrame(to: harness.guestMAC.bytes, from: Self.stranger, length: 60))
        #expect(eventually { harness.driver.status & VirtioStatus.needsReset != 0 })
        #expect(harness.logged.values.contains { $0.contains("cannot hold the header") })
    }

    // MARK: - Opening and adopting TAPs

    /// Opens /dev/net/tun blocking and attaches it to a fresh interface with `flags`.
    static func openRawTun(flags: Int32) throws -> (fd: Int32, name: String) {
        let name = "vmtr\(getpid() % 100_000)\(Int.random(in: 0..<1000))"
        let fd = open("/dev/net/tun", O_RDWR)
        guard fd >= 0 else {
            throw NetSetupError(description: "open /dev/net/tun: \(String(cString: strerror(errno)))")
        }
        var chosen = [CChar](repeating: 0, count: Int(IFNAMSIZ))
        guard clinux_tun_set_iff(fd, name, flags, &chosen) == 0 else {
            let code = errno
            close(fd)
            throw NetSetupError(description: "TUNSETIFF \(name): \(String(cString: strerror(code))) (needs root)")
        }
        return (fd, name)
    }

    @Test("an inherited TAP descriptor with IFF_VNET_HDR is adopted, made non-blocking and close-on-exec")
    func adopt() throws {
        let (fd, name) = try Self.openRawTun(flags: Int32(IFF_TAP | IFF_NO_PI | IFF_VNET_HDR))
        let tap = try TapDevice(adopting: fd)
        #expect(tap.name == name)
        #expect(tap.fd == fd)
        #expect(fcntl(fd, F_GETFL) & O_NONBLOCK != 0)
        #expect(fcntl(fd, F_GETFD) & FD_CLOEXEC != 0)
        try tap.setOffload([.checksum, .tso4])
    }

    @Test(
        "descriptors that are no TAP for virtio-net are refused, saying why",
        arguments: ["no vnet header", "tun", "pipe", "closed"])
    func adoptRefused(kind: String) throws {
        var fd: Int32
        var reason: String
        switch kind {
        case "no vnet header":
            fd = try Self.openRawTun(flags: Int32(IFF_TAP | IFF_NO_PI)).fd
            reason = "IFF_VNET_HDR"
        case "tun":
            fd = try Self.openRawTun(flags: Int32(IFF_TUN | IFF_NO_PI | IFF_VNET_HDR)).fd
            reason = "not a TAP"
        case "pipe":
            var ends: [Int32] = [0, 0]
            #expect(pipe(&ends) == 0)
            close(ends[1])
            fd = ends[0]
            reason = "not a TUN/TAP descriptor"
        default:
            // At the open-files limit: no descriptor can have that number (a fixed small number
            // could be another test's, open meanwhile).
            fd = Int32(clamping: sysconf(Int32(_SC_OPEN_MAX)))
            reason = "not open"
        }
        var owned = kind != "closed"
        defer { if owned { close(fd) } }
        do {
            _ = try TapDevice(adopting: fd)
            owned = false  // the device closed it
            Issue.record("descriptor \(fd) (\(kind)) was adopted")
        } catch {
            #expect(error.description.contains(reason), "\(error)")
        }
    }

    @Test(
        "interface names Linux cannot take are refused before anything is opened",
        arguments: ["", "sixteen-bytes-xx", "a/b"])
    func badTapName(name: String) {
        #expect(throws: TapError.invalidName(name)) { try TapDevice(name: name) }
    }

    // MARK: - MAC addresses

    @Test("MAC addresses parse in either case and print in lowercase")
    func parseMAC() throws {
        let mac = try MACAddress(parsing: "02:AB:cd:00:0F:10")
        #expect(mac.bytes == [0x02, 0xAB, 0xCD, 0x00, 0x0F, 0x10])
        #expect(mac.description == "02:ab:cd:00:0f:10")
        #expect(mac.isLocallyAdministered)
        // QEMU's 52:54:00 prefix is locally administered too; Xen's OUI is not.
        #expect(try MACAddress(parsing: "52:54:00:12:34:56").isLocallyAdministered)
        #expect(try !MACAddress(parsing: "00:16:3e:12:34:56").isLocallyAdministered)
    }

    @Test(
        "malformed, multicast, broadcast and all-zero MAC addresses are refused",
        arguments: [
            "", "02:00:00:00:00", "02:00:00:00:00:00:00", "0g:00:00:00:00:01", "2:0:0:0:0:1", "02-00-00-00-00-01",
            "02:00:00:00:00:001", "02:00:00:00:00:", " 02:00:00:00:00:01", "+2:00:00:00:00:01", "01:00:5e:00:00:01",
            "03:00:00:00:00:01", "ff:ff:ff:ff:ff:ff", "00:00:00:00:00:00",
        ])
    func badMAC(text: String) {
        #expect(throws: MACAddressError.self) { try MACAddress(parsing: text) }
    }

    @Test("a random MAC is unicast and locally administered (02:...), and differs from the last")
    func randomMAC() {
        let first = MACAddress.random()
        let second = MACAddress.random()
        #expect(first.bytes[0] == 0x02)
        #expect(first.isLocallyAdministered && first.bytes[0] & 1 == 0)
        #expect(first != second)
    }
}
