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

/// One packet the device put in a receive buffer: its header and the payload after it.
struct VsockPacket {
    var header: VsockHeader
    var payload: [UInt8]
    /// What the used ring said the device wrote.
    var usedLength: UInt32

    var op: VsockHeader.Op? { header.knownOp }
}

/// How the test guest lays out a receive buffer.
enum ReceiveLayout: Sendable, CustomStringConvertible {
    /// One writable buffer of header + 4096 bytes.
    case joined
    /// A 44-byte header buffer, then a 4096-byte data buffer (how virtio-net-style drivers split).
    case split

    var description: String { self == .joined ? "joined" : "split" }
}

/// Counts calls from the device's loop thread.
final class Counter: Sendable {
    private let value = Atomic<Int>(0)
    func increment() { value.add(1, ordering: .sequentiallyConsistent) }
    var count: Int { value.load(ordering: .sequentiallyConsistent) }
}

/// Polls `condition` until it holds or `timeout` seconds pass.
func eventually(timeout: Double = 2, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return true }
        usleep(2_000)
    }
    return try condition()
}

/// The guest side of a virtio-vsock device plus the host's Unix sockets around it: guest memory
/// with receive, transmit and event queues, a running ``EventLoop``, and a fresh temporary
/// directory for the device's socket. Everything is closed and removed on deinit.
final class VsockHarness {
    static let guestCID: UInt64 = 3
    static let hostCID: UInt64 = VsockHeader.hostCID
    /// The buf_alloc the test guest advertises unless told otherwise.
    static let guestBufferAllocation: UInt32 = 64 << 10
    static let queueSize: UInt16 = 256
    /// Payload room of one ordinary receive buffer.
    static let receivePayload = 4096
    static let slotSize: UInt64 = 0x1100

    static let rxBase: UInt64 = 0x1000
    static let txBase: UInt64 = 0x4000
    static let eventBase: UInt64 = 0x7000
    static let rxData: UInt64 = 0x10_0000
    static let txScratch: UInt64 = 0x40_0000
    static let memorySize: UInt64 = 16 << 20
    /// The send buffer the device asks for on host sockets in tests (the kernel doubles it).
    static let hostSendBufferBytes: Int32 = 32 << 10

    let directory: String
    let socketPath: String
    let loopName: String
    let memory: GuestMemory
    var rx: QueueDriver
    var rxQueue: Virtqueue
    var tx: QueueDriver
    var txQueue: Virtqueue
    var eventDriver: QueueDriver
    var eventQueue: Virtqueue
    let device: VirtioVsock
    let loop: EventLoop
    /// Times the device asked for its receive queue to be served.
    let kicks = Counter()
    let logged = Collected<String>()

    /// Packets read back from the used ring and not yet taken.
    var inbox: [VsockPacket] = []
    /// How receive buffers are posted by ``pump()``.
    var layout: ReceiveLayout = .joined
    /// Receive buffers ``pump()`` keeps posted (0: the test posts them itself).
    var postedTarget = 16
    /// Receive buffers the device gave back with nothing written.
    var returnedEmpty = 0
    /// Tops up only once fewer than half of ``postedTarget`` are outstanding, as Linux refills
    /// its vsock receive queue (`rx_buf_nr < rx_buf_max_nr / 2`).
    var refillsBelowHalf = false

    private var freeRxDescriptors: [UInt16]
    private var rxChains: [UInt16: (indices: [UInt16], buffers: [QueueDriver.Buffer])] = [:]
    private var rxSeen: UInt16 = 0
    private var hostFDs: Set<Int32> = []
    private var listenerPaths: [String] = []

    /// - Parameters:
    ///   - portSockets: guest ports that get a per-port listener, at ``portSocket(_:)``.
    ///   - connectTimeoutMilliseconds: the device's wait for the guest to accept a host CONNECT.
    init(
        guestCID: UInt64 = VsockHarness.guestCID, portSockets: [UInt32] = [],
        connectTimeoutMilliseconds: UInt64 = VirtioVsock.defaultConnectTimeoutMilliseconds
    ) throws {
        let tag = String(UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(10)).lowercased()
        directory = "/tmp/vsock-test-\(tag)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        socketPath = "\(directory)/v.sock"
        loopName = "vs\(tag.prefix(10))"
        memory = try makeMemory(size: Self.memorySize)
        rx = try QueueDriver(memory: memory, size: Self.queueSize, base: Self.rxBase, dataBase: Self.rxData)
        rxQueue = try rx.deviceQueue()
        tx = try QueueDriver(memory: memory, size: Self.queueSize, base: Self.txBase, dataBase: Self.txScratch)
        txQueue = try tx.deviceQueue()
        eventDriver = try QueueDriver(memory: memory, size: 64, base: Self.eventBase, dataBase: 0x8000)
        eventQueue = try eventDriver.deviceQueue(maxSize: 64)
        freeRxDescriptors = Array(0..<Self.queueSize)
        let logged = logged
        let directory = directory
        device = try VirtioVsock(
            guestCID: guestCID, socketPath: socketPath,
            portSockets: portSockets.map { ($0, "\(directory)/port-\($0).sock") },
            connectTimeoutMilliseconds: connectTimeoutMilliseconds,
            // Small, and the same on every machine (net.core.wmem_max caps the default), so that
            // a host that reads nothing soon leaves bytes waiting in the device.
            hostSendBufferBytes: Self.hostSendBufferBytes
        ) { logged.append($0) }
        loop = try EventLoop(name: loopName)
        try loop.start()
        let kicks = kicks
        try device.start(on: loop) { queue in if queue == 0 { kicks.increment() } }
    }

    deinit {
        loop.stop()
        for fd in hostFDs { close(fd) }
        for path in listenerPaths { unlink(path) }
        try? FileManager.default.removeItem(atPath: directory)
    }

    // MARK: - Host sockets

    /// Listens at `<socketPath>_<port>`, as a host service the guest connects to.
    func listen(port: UInt32, backlog: Int32 = 64) throws -> Int32 {
        let path = "\(socketPath)_\(port)"
        let fd = try UnixSocket.listen(at: path, backlog: backlog)
        hostFDs.insert(fd)
        listenerPaths.append(path)
        return fd
    }

    /// Accepts one connection on `listener`, waiting up to `timeout` seconds.
    func accept(_ listener: Int32, timeout: Double = 2) -> Int32? {
        var accepted: Int32?
        _ = eventually(timeout: timeout) {
            accepted = UnixSocket.accept(listener)
            return accepted != nil
        }
        if let accepted { hostFDs.insert(accepted) }
        return accepted
    }

    /// Connects to the device's socket, as a host program would.
    func connectClient() throws -> Int32 {
        let fd = try UnixSocket.connect(to: socketPath)
        hostFDs.insert(fd)
        return fd
    }

    /// Where the per-port listener for guest `port` is.
    func portSocket(_ port: UInt32) -> String { "\(directory)/port-\(port).sock" }

    /// A client of the per-port listener for guest `port`.
    func connectPortClient(_ port: UInt32) throws -> Int32 {
        let fd = try UnixSocket.connect(to: portSocket(port))
        hostFDs.insert(fd)
        return fd
    }

    /// Closes a host socket the harness handed out.
    func closeHost(_ fd: Int32) {
        if hostFDs.remove(fd) != nil { close(fd) }
    }

    // MARK: - Guest transmit

    /// A header from the guest (CID 3) to the host (CID 2).
    static func header(
        _ op: VsockHeader.Op, guestPort: UInt32, hostPort: UInt32, length: Int = 0, flags: UInt32 = 0,
        bufferAllocation: UInt32 = guestBufferAllocation, forwardCount: UInt32 = 0
    ) -> VsockHeader {
        VsockHeader(
            sourceCID: guestCID, destinationCID: hostCID, sourcePort: guestPort, destinationPort: hostPort,
            length: UInt32(length), op: op, flags: flags, bufferAllocation: bufferAllocation,
            forwardCount: forwardCount)
    }

    /// Puts `bytes` on the transmit queue as one chain (or split after `splitAt` bytes) and lets
    /// the device drain it; returns whether the device used it, and the used length.
    @discardableResult
    func transmitRaw(_ bytes: [UInt8], splitAt: [Int] = []) throws -> (used: Bool, length: UInt32?) {
        try memory.write(bytes, at: Self.txScratch)
        var buffers: [QueueDriver.Buffer] = []
        var start = 0
        for cut in splitAt.filter({ $0 > 0 && $0 < bytes.count }) + [bytes.count] {
            buffers.append(.readable(Self.txScratch + UInt64(start), UInt32(cut - start)))
            start = cut
        }
        let before = try tx.usedIndex
        let head = try tx.offer(buffers)
        _ = try device.process(queue: VirtioVsock.transmitQueue, &txQueue, memory: memory)
        let after = try tx.usedIndex
        guard after != before else { return (false, nil) }
        let used = try tx.used(Int(before))
        #expect(used.id == UInt32(head))
        return (true, used.length)
    }

    /// Sends one packet from the guest; `split` puts the payload in its own descriptor.
    @discardableResult
    func send(_ header: VsockHeader, payload: [UInt8] = [], split: Bool = false) throws -> Bool {
        var header = header
        if header.knownOp == .rw && header.length == 0 { header.length = UInt32(payload.count) }
        let result = try transmitRaw(
            header.encoded + payload, splitAt: split && !payload.isEmpty ? [VsockHeader.size] : [])
        if result.used { #expect(result.length == 0, "transmit buffers are only read") }
        return result.used
    }

    /// Sends `op` from guest port `guestPort` to host port `hostPort`.
    @discardableResult
    func send(
        _ op: VsockHeader.Op, guestPort: UInt32, hostPort: UInt32, payload: [UInt8] = [], flags: UInt32 = 0,
        bufferAllocation: UInt32 = guestBufferAllocation, forwardCount: UInt32 = 0, split: Bool = false
    ) throws -> Bool {
        try send(
            Self.header(
                op, guestPort: guestPort, hostPort: hostPort, length: payload.count, flags: flags,
                bufferAllocation: bufferAllocation, forwardCount: forwardCount), payload: payload, split: split)
    }

    // MARK: - Guest receive

    /// Posts one receive chain of buffers of `lengths` bytes; returns its head, or nil when the
    /// queue has no free descriptors.
    @discardableResult
    func postReceive(lengths: [UInt32]) throws -> UInt16? {
        precondition(lengths.allSatisfy { UInt64($0) <= Self.slotSize })
        guard freeRxDescriptors.count >= lengths.count else { return nil }
        let indices = Array(freeRxDescriptors.prefix(lengths.count))
        freeRxDescriptors.removeFirst(lengths.count)
        let buffers = zip(indices, lengths).map { index, length in
            QueueDriver.Buffer.writable(Self.rxData + UInt64(index) * Self.slotSize, length)
        }
        for buffer in buffers { try memory.zero(at: buffer.address, count: Int(buffer.length)) }
        let head = try rx.addChain(buffers, at: indices)
        try rx.publish(head)
        rxChains[head] = (indices, buffers)
        return head
    }

    /// Receive chains posted and not yet used.
    var outstandingReceives: Int { rxChains.count }

    /// Posts ordinary receive buffers in ``layout`` until ``postedTarget`` are outstanding.
    func topUpReceives() throws {
        if refillsBelowHalf && outstandingReceives >= postedTarget / 2 { return }
        while outstandingReceives < postedTarget {
            let lengths: [UInt32] =
                layout == .joined
                ? [UInt32(VsockHeader.size + Self.receivePayload)]
                : [UInt32(VsockHeader.size), UInt32(Self.receivePayload)]
            guard try postReceive(lengths: lengths) != nil else { return }
        }
    }

    /// Reads every newly used receive chain into ``inbox``.
    func collect() throws {
        let usedIndex = try rx.usedIndex
        while rxSeen != usedIndex {
            let element = try rx.used(Int(rxSeen))
            rxSeen &+= 1
            let head = UInt16(truncatingIfNeeded: element.id)
            guard let chain = rxChains.removeValue(forKey: head) else {
                Issue.record("the device used receive chain \(head), which is not outstanding")
                continue
            }
            freeRxDescriptors += chain.indices
            if element.length == 0 {
                returnedEmpty += 1  // a buffer the device held and gives back unused
                continue
            }
            var bytes: [UInt8] = []
            for buffer in chain.buffers where bytes.count < Int(element.length) {
                let count = min(Int(buffer.length), Int(element.length) - bytes.count)
                bytes += try memory.read(at: buffer.address, count: count)
            }
            guard let header = VsockHeader(bytes) else {
                Issue.record("the device wrote \(element.length) bytes, less than a header")
                continue
            }
            let payloadLength = min(Int(header.length), bytes.count - VsockHeader.size)
            #expect(
                Int(element.length) == VsockHeader.size + Int(header.length),
                "used length \(element.length) does not match the header's length \(header.length)")
            inbox.append(
                VsockPacket(
                    header: header,
                    payload: Array(bytes[VsockHeader.size..<(VsockHeader.size + payloadLength)]),
                    usedLength: element.length))
        }
    }

    /// Lets the device serve the receive queue once (topping up buffers first).
    func pump() throws {
        try topUpReceives()
        _ = try device.process(queue: VirtioVsock.receiveQueue, &rxQueue, memory: memory)
        try collect()
    }

    /// The next packet for the guest, serving the receive queue until one arrives.
    func next(timeout: Double = 2) throws -> VsockPacket? {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            if !inbox.isEmpty { return inbox.removeFirst() }
            try pump()
            if !inbox.isEmpty { return inbox.removeFirst() }
            if Date() >= deadline { return nil }
            usleep(1_000)
        }
    }

    /// The next packet, which must be `op`; records an issue otherwise.
    func expect(_ op: VsockHeader.Op, timeout: Double = 2, sourceLocation: SourceLocation = #_sourceLocation)
        throws -> VsockPacket?
    {
        guard let packet = try next(timeout: timeout) else {
            Issue.record("no \(op) packet arrived for the guest", sourceLocation: sourceLocation)
            return nil
        }
        if packet.op != op {
            Issue.record(
                "expected \(op), got op \(packet.header.op) (\(String(describing: packet.op))) \(packet.header)",
                sourceLocation: sourceLocation)
        }
        return packet
    }

    /// Every packet that arrives within `duration` seconds.
    func drain(for duration: Double = 0.15) throws -> [VsockPacket] {
        let deadline = Date().addingTimeInterval(duration)
        while Date() < deadline {
            try pump()
            usleep(2_000)
        }
        try pump()
        defer { inbox.removeAll() }
        return inbox
    }

    /// Collects RW payload for the guest port `guestPort` until `count` bytes arrived or
    /// `timeout` passes; other packets stay in the inbox. Optionally acknowledges what it took
    /// with a CREDIT_UPDATE so that long transfers keep flowing.
    func receiveData(
        count: Int, guestPort: UInt32, hostPort: UInt32, timeout: Double = 3, creditUpdates: Bool = false,
        bufferAllocation: UInt32 = guestBufferAllocation, consumedBefore: UInt32 = 0
    ) throws -> [UInt8] {
        var data: [UInt8] = []
        var consumed = consumedBefore
        let deadline = Date().addingTimeInterval(timeout)
        while data.count < count && Date() < deadline {
            try pump()
            var rest: [VsockPacket] = []
            for packet in inbox {
                if packet.op == .rw && packet.header.destinationPort == guestPort
                    && packet.header.sourcePort == hostPort
                {
                    data += packet.payload
                    consumed &+= UInt32(packet.payload.count)
                    if creditUpdates {
                        try send(
                            .creditUpdate, guestPort: guestPort, hostPort: hostPort,
                            bufferAllocation: bufferAllocation, forwardCount: consumed)
                    }
                } else {
                    rest.append(packet)
                }
            }
            inbox = rest
            if data.count < count { usleep(1_000) }
        }
        return data
    }

    // MARK: - Streams

    /// A guest connection to the host listener `listener` at `hostPort`: REQUEST, RESPONSE, and
    /// the host side accepted. Returns the host socket.
    func openGuestStream(
        guestPort: UInt32, hostPort: UInt32, listener: Int32, bufferAllocation: UInt32 = guestBufferAllocation,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> Int32? {
        try send(.request, guestPort: guestPort, hostPort: hostPort, bufferAllocation: bufferAllocation)
        guard let response = try expect(.response, sourceLocation: sourceLocation), response.op == .response else {
            return nil
        }
        #expect(response.header.sourcePort == hostPort, sourceLocation: sourceLocation)
        #expect(response.header.destinationPort == guestPort, sourceLocation: sourceLocation)
        guard let fd = accept(listener) else {
            Issue.record("the host listener accepted nothing", sourceLocation: sourceLocation)
            return nil
        }
        return fd
    }

    /// A host program's connection to guest port `guestPort`: CONNECT, REQUEST, RESPONSE, and
    /// `OK <port>`. Returns the client socket and the host port the device picked.
    func openHostStream(
        guestPort: UInt32, bufferAllocation: UInt32 = guestBufferAllocation,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> (fd: Int32, hostPort: UInt32)? {
        let client = try connectClient()
        #expect(Host.write(client, Array("CONNECT \(guestPort)\n".utf8)), sourceLocation: sourceLocation)
        guard let request = try expect(.request, sourceLocation: sourceLocation), request.op == .request else {
            return nil
        }
        let hostPort = request.header.sourcePort
        try send(.response, guestPort: guestPort, hostPort: hostPort, bufferAllocation: bufferAllocation)
        let ok = Host.readLine(client)
        #expect(ok == "OK \(hostPort)", sourceLocation: sourceLocation)
        return (client, hostPort)
    }

    /// Sends 32 KiB RW packets (within the device's credit) to a host socket nobody reads until
    /// some bytes wait inside the device, as CREDIT_REQUEST replies tell; returns what was sent
    /// and how much of it the device still holds.
    func fillUntilPending(guestPort: UInt32, hostPort: UInt32, seed: Int = 0) throws -> (
        sent: [UInt8], unforwarded: UInt32
    ) {
        let chunk = 32 << 10
        var sent: [UInt8] = []
        var forwarded: UInt32 = 0
        while sent.count - Int(forwarded) == 0 && sent.count < 4 << 20 {
            let bytes = pattern(chunk, seed: seed + sent.count / chunk)
            try send(.rw, guestPort: guestPort, hostPort: hostPort, payload: bytes)
            sent += bytes
            try send(.creditRequest, guestPort: guestPort, hostPort: hostPort)
            for packet in try drain(for: 0) {
                #expect(packet.op == .creditUpdate, "unexpected \(packet.header)")
                forwarded = packet.header.forwardCount
            }
        }
        return (sent, UInt32(sent.count) &- forwarded)
    }

    // MARK: - The loop thread

    /// CPU time (in clock ticks) the event loop's thread has used so far, from /proc, waiting up
    /// to a second for the thread to have named itself.
    func loopThreadTicks() -> Int? {
        var ticks: Int?
        _ = eventually(timeout: 1) {
            ticks = findLoopThreadTicks()
            return ticks != nil
        }
        return ticks
    }

    private func findLoopThreadTicks() -> Int? {
        guard let directory = opendir("/proc/self/task") else { return nil }
        defer { closedir(directory) }
        while let entry = readdir(directory) {
            let task = withUnsafeBytes(of: entry.pointee.d_name) {
                String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard task.first?.isNumber == true,
                let comm = Self.readProcFile("/proc/self/task/\(task)/comm"),
                comm.trimmingCharacters(in: .whitespacesAndNewlines) == loopName,
                let stat = Self.readProcFile("/proc/self/task/\(task)/stat"),
                let close = stat.lastIndex(of: ")")
            else { continue }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            // Fields from the state (field 3) on: utime is field 14, stime field 15.
            guard fields.count > 12, let user = Int(fields[11]), let system = Int(fields[12]) else { return nil }
            return user + system
        }
        return nil
    }

    /// A small /proc file's text, read with plain system calls.
    static func readProcFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { Glibc.close(fd) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        var count = 0
        while count < buffer.count {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + count, $0.count - count) }
            if n > 0 {
                count += n
            } else if n < 0 && errno == EINTR {
                continue
            } else {
                break
            }
        }
        return String(decoding: buffer[0..<count], as: UTF8.self)
    }
}

/// Blocking-with-deadline helpers for the host's non-blocking Unix sockets.
enum Host {
    enum ReadResult: Equatable {
        case data([UInt8])
        case endOfFile
        case failed(Int32)
        case timedOut
    }

    /// Waits up to `timeout` seconds for `events` on `fd`.
    static func wait(_ fd: Int32, _ events: Int16, timeout: Double) -> Bool {
        var descriptor = pollfd(fd: fd, events: events, revents: 0)
        var result: Int32
        repeat { result = poll(&descriptor, 1, Int32(timeout * 1000)) } while result < 0 && errno == EINTR
        return result > 0
    }

    /// One read of up to `max` bytes.
    static func read(_ fd: Int32, max: Int = 1 << 16, timeout: Double = 2) -> ReadResult {
        guard wait(fd, Int16(POLLIN), timeout: timeout) else { return .timedOut }
        var buffer = [UInt8](repeating: 0, count: max)
        while true {
            let n = Glibc.read(fd, &buffer, max)
            if n > 0 { return .data(Array(buffer[0..<n])) }
            if n == 0 { return .endOfFile }
            if errno == EINTR { continue }
            if errno == EAGAIN { return .timedOut }
            return .failed(errno)
        }
    }

    /// Reads until `count` bytes came, the stream ended, or `timeout` passed.
    static func read(_ fd: Int32, count: Int, timeout: Double = 3) -> [UInt8] {
        var bytes: [UInt8] = []
        let deadline = Date().addingTimeInterval(timeout)
        while bytes.count < count {
            let left = deadline.timeIntervalSinceNow
            guard left > 0, case .data(let chunk) = read(fd, max: min(1 << 16, count - bytes.count), timeout: left)
            else { break }
            bytes += chunk
        }
        return bytes
    }

    /// A line without its newline (at most 64 bytes), read byte by byte.
    static func readLine(_ fd: Int32, timeout: Double = 2) -> String? {
        var line: [UInt8] = []
        let deadline = Date().addingTimeInterval(timeout)
        while line.count < 64 {
            guard case .data(let byte) = read(fd, max: 1, timeout: max(0, deadline.timeIntervalSinceNow)) else {
                return nil
            }
            if byte == [UInt8(ascii: "\n")] { return String(decoding: line, as: UTF8.self) }
            line += byte
        }
        return nil
    }

    /// Reads until the stream ends; returns what came and whether it ended (EOF, or a reset
    /// from a peer that closed with unread input) within `timeout`.
    static func readToEnd(_ fd: Int32, timeout: Double = 2) -> (bytes: [UInt8], closed: Bool) {
        var bytes: [UInt8] = []
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            let left = deadline.timeIntervalSinceNow
            guard left > 0 else { return (bytes, false) }
            switch read(fd, timeout: left) {
            case .data(let chunk): bytes += chunk
            case .endOfFile: return (bytes, true)
            case .failed(let code): return (bytes, code == ECONNRESET || code == EPIPE)
            case .timedOut: return (bytes, false)
            }
        }
    }

    /// Writes all of `bytes`, waiting for room up to `timeout` seconds.
    @discardableResult
    static func write(_ fd: Int32, _ bytes: [UInt8], timeout: Double = 2) -> Bool {
        var done = 0
        let deadline = Date().addingTimeInterval(timeout)
        while done < bytes.count {
            let n = bytes[done...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n > 0 {
                done += n
            } else if n < 0 && errno == EINTR {
                continue
            } else if n < 0 && errno == EAGAIN {
                let left = deadline.timeIntervalSinceNow
                guard left > 0, wait(fd, Int16(POLLOUT), timeout: left) else { return false }
            } else {
                return false
            }
        }
        return true
    }

    /// Writes what the socket takes now, without waiting.
    static func writeSome(_ fd: Int32, _ bytes: [UInt8]) -> Int {
        let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT)) }
        return max(n, 0)
    }

    /// Whether nothing is waiting to be read (and the stream has not ended) right now.
    static func isQuiet(_ fd: Int32, for duration: Double = 0.05) -> Bool {
        !wait(fd, Int16(POLLIN), timeout: duration)
    }
}

/// A recognizable byte pattern.
func pattern(_ count: Int, seed: Int = 0) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: ($0 &* 31 &+ seed &* 7 &+ ($0 >> 8)) % 251) }
}
