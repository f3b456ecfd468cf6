import EventLoop
import Synchronization

/// Interrupts sent once per batch of device-thread events.
///
/// One event often completes buffers on two queues: a vsock credit update taken from the
/// transmit queue lets the receive queue carry data, in the same pass of the device thread.
/// Sent as decided, that is two interrupts; sent when the pass is over, those on one vector (a
/// device whose queues share one, such as ``VirtioVsock``) are one. In a nested guest every
/// interrupt costs exits on the way in and out.
extension VirtioPCIDevice {
    /// The vectors waiting for the end of the device thread's batch, and the signal that sends them.
    final class InterruptBatch: Sendable {
        let loop: EventLoop
        let flush: LoopSignal
        let vectors = Mutex<[Int]>([])

        init(loop: EventLoop, flush: LoopSignal) {
            self.loop = loop
            self.flush = flush
        }
    }

    /// From now on, interrupts this transport decides on `loop`'s thread are sent once the
    /// loop's current batch of events has been handled, each vector once; those decided on
    /// other threads (a vCPU serving a doorbell itself) are still sent at once.
    public func batchInterrupts(on loop: EventLoop) throws(EventLoopError) {
        let flush = try LoopSignal()
        try loop.add(flush) { [weak self] in self?.flushInterrupts() }
        interruptBatch.withLock { $0 = InterruptBatch(loop: loop, flush: flush) }
    }

    /// Sends `vector` now, or at the end of the device thread's batch when called there.
    func interrupt(_ vector: Int) {
        guard let batch = interruptBatch.withLock({ $0 }), batch.loop.isCurrentThread else {
            return msix.trigger(vector)
        }
        batch.vectors.withLock { if !$0.contains(vector) { $0.append(vector) } }
        batch.flush.raise()
    }

    private func flushInterrupts() {
        guard let batch = interruptBatch.withLock({ $0 }) else { return }
        let vectors = batch.vectors.withLock { vectors in
            defer { vectors.removeAll(keepingCapacity: true) }
            return vectors
        }
        for vector in vectors { msix.trigger(vector) }
    }
}
