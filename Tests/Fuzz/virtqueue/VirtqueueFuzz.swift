import FuzzSupport
import GuestMemory
import Virtio

#if canImport(Glibc)
    import Glibc
#endif

// Fuzz target for the device side of split virtqueues: the input is what a hostile guest
// controls (the contents of guest RAM, the queue size and the ring addresses). Queues are
// served by virtio-rng, virtio-blk, virtio-vsock or virtio-net; any crash, hang or out-of-bounds
// access is a bug.
//
// Built with `tools/fuzz` (libFuzzer, -DFUZZING); built normally it replays the files named on
// its command line, so corpus entries that once failed stay as regression tests.

/// Guest RAM for one run: 64 KiB, filled from the input.
let ramSize = 64 << 10
let memory: GuestMemory = {
    do { return try GuestMemory(ranges: [(0, UInt64(ramSize))]) } catch { fatalError("cannot map guest RAM: \(error)") }
}()
let disk: VirtioBlock = {
    let path = "/tmp/vmtools-fuzz-disk-\(getpid()).img"
    let fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0o600)
    ftruncate(fd, 64 << 10)
    close(fd)
    defer { unlink(path) }
    do { return try VirtioBlock(path: path, readOnly: false) } catch {
        fatalError("cannot open the fuzz disk: \(error)")
    }
}()
let rng = VirtioRNG()
/// Not started on an event loop: streams to the host are refused, everything else is parsed.
let vsock: VirtioVsock = {
    do { return try VirtioVsock(guestCID: 3, socketPath: "/tmp/vmtools-fuzz-vsock-\(getpid()).sock") } catch {
        fatalError("cannot create the fuzz vsock: \(error)")
    }
}()

/// virtio-net's host side without a TAP (which needs root): a datagram socket pair, one frame
/// per datagram as a TAP gives them. Frames the guest transmits land in `peer`; frames written
/// to `peer` are what the guest receives.
final class DatagramBackend: NetBackend {
    let fd: Int32
    let peer: Int32

    init() {
        var ends: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &ends) == 0 else {
            fatalError("cannot make the fuzz NIC's socket pair: \(String(cString: strerror(errno)))")
        }
        fd = ends[0]
        peer = ends[1]
    }

    func setOffload(_ offload: TapOffload) throws(TapError) {}

    /// Throws away whatever waits on `descriptor`, so that runs stay independent.
    func drain(_ descriptor: Int32) {
        var scratch = [UInt8](repeating: 0, count: 1 << 17)
        while scratch.withUnsafeMutableBytes({ recv(descriptor, $0.baseAddress, $0.count, 0) }) >= 0 {}
    }
}
let netBackend = DatagramBackend()
let net: VirtioNet = {
    guard let mac = try? MACAddress(parsing: "02:00:00:00:00:01") else { fatalError("bad fuzz MAC") }
    return VirtioNet(backend: netBackend, mac: mac)
}()

/// Runs one input; returns 0 as libFuzzer expects.
func fuzzOne(_ input: UnsafeRawBufferPointer) -> Int32 {
    guard input.count >= 16 else { return 0 }
    let header = Array(input.prefix(16))
    func word(_ i: Int) -> UInt64 { UInt64(header[i]) | UInt64(header[i + 1]) << 8 }
    if let ram = try? memory.buffer(at: 0, count: ramSize) {
        ram.initializeMemory(as: UInt8.self, repeating: 0)
        let body = UnsafeRawBufferPointer(rebasing: input[16...])
        ram.copyMemory(from: UnsafeRawBufferPointer(rebasing: body.prefix(ramSize)))
    }
    var queue = Virtqueue(maxSize: 256)
    queue.size = UInt16(truncatingIfNeeded: word(0))
    queue.descriptorTable = word(2) * 16
    queue.availableRing = word(4) * 2
    queue.usedRing = word(6) * 4
    guard (try? queue.validate(memory: memory)) != nil else { return 0 }
    queue.ready = true
    let devices: [any VirtioDevice] = [rng, disk, vsock, net]
    let device = devices[Int(header[8]) % devices.count]
    // vsock and net: queue 1 takes the guest's packets, queue 0 fills receive buffers.
    let queueIndex = device is VirtioVsock || device is VirtioNet ? Int(header[9] & 1) : 0
    if device is VirtioNet {
        netBackend.drain(netBackend.fd)
        // Up to three frames for the receive queue, of lengths the input picks (some shorter
        // than the virtio-net header, some larger than any buffer).
        for i in 0..<Int(header[10] % 4) {
            let length = Int(word(11)) >> (4 * i)
            let frame = [UInt8](repeating: UInt8(truncatingIfNeeded: i &+ 0x5A), count: length)
            _ = frame.withUnsafeBytes { send(netBackend.peer, $0.baseAddress, $0.count, 0) }
        }
    }
    defer { if device is VirtioNet { netBackend.drain(netBackend.peer) } }
    // Serve until the queue is empty or broken; bounded, as popChain consumes at most one
    // request per available-index step.
    for _ in 0..<4 {
        guard (try? device.process(queue: queueIndex, &queue, memory: memory)) != nil else { break }
    }
    return 0
}

#if FUZZING
    @_cdecl("LLVMFuzzerTestOneInput")
    public func LLVMFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
        fuzzOne(UnsafeRawBufferPointer(start: data, count: size))
    }

    // SwiftPM names an executable's entry point after its module; libFuzzer's driver runs from it.
    @_cdecl("fuzz_virtqueue_main")
    func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
        runLibFuzzer(argc, argv) { LLVMFuzzerTestOneInput($0, $1) }
    }
#else
    @main
    struct Replay {
        static func main() { replayInputs(name: "fuzz-virtqueue", arguments: CommandLine.arguments, fuzzOne) }
    }
#endif
