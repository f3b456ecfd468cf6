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
        /// With event indexes: the used index the driver wants an interrupt after (its
        /// used_event), and the available index the device asked to be kicked at (avail_event).
        public var usedEvent, availableEvent: UInt16
        /// The queue's MSI-X vector, and whether it is masked or has an interrupt pending: a
        /// stream that stopped with used buffers the driver never took shows here.
        public var vector: UInt16
        public var vectorMasked, vectorPending: Bool
        /// The used index when the device last decided whether to interrupt, and when it last
        /// did; how many interrupts it has raised for this queue.
        public var checkedUsed, signalledUsed: UInt16
        public var interrupts: UInt64

        /// `{"ready":true,"size":256,...}`.
        public var json: String {
            #"{"ready":\#(ready),"size":\#(size),"next_avail":\#(nextAvailable),"next_used":\#(nextUsed),"avail_idx":\#(availableIndex),"avail_flags":\#(availableFlags),"used_event":\#(usedEvent),"avail_event":\#(availableEvent),"vector":\#(vector),"vector_masked":\#(vectorMasked),"vector_pending":\#(vectorPending),"checked_used":\#(checkedUsed),"signalled_used":\#(signalledUsed),"interrupts":\#(interrupts)}"#
        }
    }

    /// Every queue's position, for diagnosing a device that stopped moving.
    public var queueStatus: [QueueStatus] {
        state.withLock { state in
            state.queues.map { queue in
                let ringReadable = queue.ready && queue.availableRing != 0 && queue.usedRing != 0
                func load(_ address: UInt64) -> UInt16 {
                    ringReadable ? (try? memory.load(UInt16.self, at: address)) ?? 0 : 0
                }
                let vector = msix.vectorState(Int(queue.msixVector))
                return QueueStatus(
                    ready: queue.ready, size: queue.size, nextAvailable: queue.nextAvailable,
                    nextUsed: queue.nextUsed, availableIndex: load(queue.availableRing + 2),
                    availableFlags: load(queue.availableRing),
                    usedEvent: load(queue.availableRing + 4 + 2 * UInt64(queue.size)),
                    availableEvent: load(queue.usedRing + 4 + 8 * UInt64(queue.size)), vector: queue.msixVector,
                    vectorMasked: vector?.masked ?? true, vectorPending: vector?.pending ?? false,
                    checkedUsed: queue.checkedUsed, signalledUsed: queue.signalledUsed, interrupts: queue.interruptCount
                )
            }
        }
    }

    /// Whether the device reported NEEDS_RESET after a broken queue.
    public var needsReset: Bool { state.withLock { $0.status & VirtioStatus.needsReset != 0 } }
}
