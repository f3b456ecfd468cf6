import EventLoop
import KVM
import Synchronization
import Virtio

/// The queue-notify doorbells of one virtio-pci device served by KVM ioeventfds: a guest write
/// to a doorbell signals an eventfd inside the kernel instead of exiting to the VMM, and the
/// device thread (an ``EventLoop``) serves the queue. Registrations follow BAR 0 wherever the
/// guest maps it; while it is unmapped, or if KVM refuses one, writes take the ordinary MMIO exit
/// path, which serves the queue on the vCPU thread.
final class QueueDoorbells: Sendable {
    private let vm: VirtualMachine
    private let loop: EventLoop
    private let transport: VirtioPCIDevice
    private let events: [EventFD]
    /// 0 (any write size) when KVM supports it, else the 2-byte writes Linux's driver uses.
    private let length: UInt32
    private let placed = Mutex<UInt64?>(nil)
    private let log: Logger

    init(vm: VirtualMachine, loop: EventLoop, transport: VirtioPCIDevice, log: Logger) throws {
        self.vm = vm
        self.loop = loop
        self.transport = transport
        self.log = log
        length = vm.system.checkExtension(.ioeventfdAnyLength) > 0 ? 0 : 2
        events = try (0..<transport.queueCount).map { _ in try EventFD() }
        // Watched edge-triggered and never read: every signal of an eventfd wakes its pollers,
        // so each guest write is an edge of its own, and the counter saturates instead of
        // overflowing. Reading it would be one system call per doorbell for nothing.
        for (queue, event) in events.enumerated() {
            try loop.add(event.fd, interest: [.readable, .edgeTriggered]) { [transport] _ in
                transport.notify(queue: queue)
                return .keep
            }
        }
        transport.observeNotifyRegion { [weak self] base in self?.move(to: base) }
    }

    /// How many doorbells are served by ioeventfds right now.
    var registeredCount: Int { placed.withLock { $0 == nil ? 0 : events.count } }

    private func move(to base: UInt64?) {
        placed.withLock { placed in
            if let old = placed {
                for (queue, event) in events.enumerated() {
                    try? register(event, at: old + UInt64(queue * VirtioPCIDevice.notifyStride), deassign: true)
                }
                placed = nil
            }
            guard let base else { return }
            do {
                for (queue, event) in events.enumerated() {
                    try register(event, at: base + UInt64(queue * VirtioPCIDevice.notifyStride), deassign: false)
                }
                placed = base
            } catch {
                // Undo the partial set; the MMIO exit path serves every doorbell instead.
                for (queue, event) in events.enumerated() {
                    try? register(event, at: base + UInt64(queue * VirtioPCIDevice.notifyStride), deassign: true)
                }
                log.error("virtio-\(transport.device.deviceType): queue doorbells stay on the exit path: \(error)")
            }
        }
    }

    private func register(_ event: EventFD, at address: UInt64, deassign: Bool) throws(KVMError) {
        try vm.registerIOEventFD(
            eventfd: event.fd, address: address, length: length, isPIO: false, deassign: deassign)
    }
}
