import GuestMemory

/// virtio-rng (entropy device, type 4): fills each request's writable buffers from the host's
/// getrandom(2). One queue; no configuration space.
public final class VirtioRNG: VirtioDevice {
    /// Most bytes served per request (the driver asks for small amounts; a huge request gets a
    /// partial answer, which the protocol allows).
    static let maxPerRequest = 64 << 10

    public init() {}

    public var deviceType: UInt16 { 4 }
    public var features: UInt64 { 0 }
    public var queueMaxSizes: [UInt16] { [256] }

    public func readConfig(offset: Int, data: UnsafeMutableRawBufferPointer) { data.storeLittleEndian(0) }

    public func process(queue index: Int, _ queue: inout Virtqueue, memory: GuestMemory) throws(VirtqueueError) -> Bool
    {
        var completed = false
        while let chain = try queue.popChain(memory: memory) {
            let wanted = min(chain.writable.reduce(0) { $0 + Int($1.length) }, Self.maxPerRequest)
            // The standard library's system generator is getrandom(2) on Linux.
            var generator = SystemRandomNumberGenerator()
            var bytes: [UInt8] = []
            bytes.reserveCapacity(wanted + 8)
            while bytes.count < wanted { withUnsafeBytes(of: generator.next()) { bytes += $0 } }
            let written = try chain.writeBytes(bytes.prefix(wanted), memory: memory)
            try queue.pushUsed(head: chain.head, written: UInt32(written), memory: memory)
            completed = true
        }
        return completed
    }
}
