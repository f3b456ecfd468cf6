import GuestMemory
import Synchronization

/// virtio-console (type 3) with a single port: the guest's `hvc0`.
///
/// Transmitted buffers go to `output`. Host input waits in a bounded buffer until the guest
/// posts receive buffers; ``receive(_:)`` reports how much fitted, so the caller can hold back
/// (no unbounded buffering when the guest stops reading).
public final class VirtioConsole: VirtioDevice {
    /// Host input held for the guest at most.
    public static let inputCapacity = 64 << 10
    static let receiveQueue = 0
    static let transmitQueue = 1

    private let output: @Sendable ([UInt8]) -> Void
    private let pending = Mutex<[UInt8]>([])

    /// - Parameter output: called with each chunk the guest writes to hvc0.
    public init(output: @escaping @Sendable ([UInt8]) -> Void) {
        self.output = output
    }

    public var deviceType: UInt16 { 3 }
    public var features: UInt64 { 0 }
    public var queueMaxSizes: [UInt16] { [64, 64] }

    public func readConfig(offset: Int, data: UnsafeMutableRawBufferPointer) {
        // Without VIRTIO_CONSOLE_F_SIZE or F_MULTIPORT the configuration is unused: zeros.
        data.storeLittleEndian(0)
    }

    /// Queues host input; returns how many bytes were accepted. The transport's
    /// `notify(queue: 0)` then hands them to the guest.
    @discardableResult
    public func receive(_ bytes: some Collection<UInt8>) -> Int {
        pending.withLock { pending in
            let accepted = min(Self.inputCapacity - pending.count, bytes.count)
            pending += bytes.prefix(accepted)
            return accepted
        }
    }

    public func reset() {
        pending.withLock { $0.removeAll() }
    }

    public func process(queue index: Int, _ queue: inout Virtqueue, memory: GuestMemory) throws(VirtqueueError) -> Bool
    {
        var completed = false
        switch index {
        case Self.transmitQueue:
            while let chain = try queue.popChain(memory: memory) {
                let bytes = try chain.readBytes(memory: memory)
                if !bytes.isEmpty { output(bytes) }
                try queue.pushUsed(head: chain.head, written: 0, memory: memory)
                completed = true
            }
        case Self.receiveQueue:
            // Take receive buffers only while there is input for them.
            while pending.withLock({ !$0.isEmpty }), let chain = try queue.popChain(memory: memory) {
                let chunk = pending.withLock { Array($0.prefix(chain.writable.reduce(0) { $0 + Int($1.length) })) }
                let written = try chain.writeBytes(chunk, memory: memory)
                pending.withLock { $0.removeFirst(written) }
                try queue.pushUsed(head: chain.head, written: UInt32(written), memory: memory)
                completed = true
            }
        default:
            break
        }
        return completed
    }
}
