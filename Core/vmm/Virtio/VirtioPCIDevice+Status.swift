import GuestMemory

// MARK: - Status

extension VirtioPCIDevice {
    /// `vmm status`'s view of one queue: where the device is in it and where the driver is.
    public struct QueueStatus: Sendable {
        public var ready: Bool
        public var size: UInt16
        /// The device's next available slot and next used slot.
        public var nextAvailable, nextUsed: UInt16
        /// The driver's available index and flags as they are in guest memory now.
        public var availableIndex, availableFlags: UInt16

        /// `{"ready":true,"size":256,...}`.
        public var json: String {
            #"{"ready":\#(ready),"size":\#(size),"next_avail":\#(nextAvailable),"next_used":\#(nextUsed),"avail_idx":\#(availableIndex),"avail_flags":\#(availableFlags)}"#
        }
    }

    /// Every queue's position, for diagnosing a device that stopped moving.
    public var queueStatus: [QueueStatus] {
        state.withLock { state in
            state.queues.map { queue in
                let ringReadable = queue.ready && queue.availableRing != 0
                return QueueStatus(
                    ready: queue.ready, size: queue.size, nextAvailable: queue.nextAvailable,
                    nextUsed: queue.nextUsed,
                    availableIndex: ringReadable
                        ? (try? memory.load(UInt16.self, at: queue.availableRing + 2)) ?? 0 : 0,
                    availableFlags: ringReadable ? (try? memory.load(UInt16.self, at: queue.availableRing)) ?? 0 : 0)
            }
        }
    }

    /// Whether the device reported NEEDS_RESET after a broken queue.
    public var needsReset: Bool { state.withLock { $0.status & VirtioStatus.needsReset != 0 } }
}
