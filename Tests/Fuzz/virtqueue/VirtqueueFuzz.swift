import FuzzSupport
import GuestMemory
import Virtio

#if canImport(Glibc)
    import Glibc
#endif

// Fuzz target for the device side of split virtqueues: the input is what a hostile guest
// controls (the contents of guest RAM, the queue size and the ring addresses). Queues are
// served by virtio-rng, virtio-blk or virtio-vsock; any crash, hang or out-of-bounds access is
// a bug.
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
    let devices: [any VirtioDevice] = [rng, disk, vsock]
    let device = devices[Int(header[8]) % devices.count]
    // vsock: queue 1 parses guest packets, queue 0 fills receive buffers with the replies.
    let queueIndex = device is VirtioVsock ? Int(header[9] & 1) : 0
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
