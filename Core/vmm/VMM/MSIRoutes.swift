import EventLoop
import KVM
import PCI
import Synchronization

/// The VM's GSI routing table: the legacy irqchip lines plus one MSI route per device vector in
/// use, each raised through its own irqfd. Routes are written to KVM when a vector is first
/// used or the guest reprograms its message, so an interrupt is one eventfd write.
final class MSIRoutes: Sendable {
    private struct State {
        var msi: [UInt32: IRQRoute.Target] = [:]
        var nextGSI = IRQRoute.ioapicPins
    }

    /// KVM accepts GSIs below KVM_MAX_IRQ_ROUTES (4096 on x86).
    static let maxGSI: UInt32 = 4096
    let vm: VirtualMachine
    private let state = Mutex(State())

    init(vm: VirtualMachine) { self.vm = vm }

    /// A GSI of its own for one vector.
    func allocate() throws(VMMError) -> UInt32 {
        try state.withLock { (state: inout State) throws(VMMError) -> UInt32 in
            guard state.nextGSI < Self.maxGSI else { throw VMMError("out of interrupt routes (GSIs)") }
            defer { state.nextGSI += 1 }
            return state.nextGSI
        }
    }

    /// Points `gsi` at the MSI `address`/`data`; a no-op when it already does.
    func route(_ gsi: UInt32, address: UInt64, data: UInt32) throws(KVMError) {
        try state.withLock { (state: inout State) throws(KVMError) in
            let target = IRQRoute.Target.msi(address: address, data: data)
            guard state.msi[gsi] != target else { return }
            var table = state.msi
            table[gsi] = target
            // Written under the lock so tables from two threads cannot land out of order; kept
            // only once KVM took it, so that a refused table is tried again on the next signal
            // instead of the vector firing into a stale route for good.
            let routes = table.sorted { $0.key < $1.key }.map { IRQRoute(gsi: $0.key, target: $0.value) }
            try vm.setGSIRouting(IRQRoute.defaultIRQChipRoutes + routes)
            state.msi = table
        }
    }
}

/// A device's MSI-X vectors delivered through irqfds: each vector gets a GSI and an eventfd
/// the first time it fires. If KVM refuses the route or the irqfd, the message is injected
/// directly with `KVM_SIGNAL_MSI`, so an interrupt is never lost.
final class IRQFDSignaler: MSISignaler {
    private struct Line {
        let gsi: UInt32
        let event: EventFD
    }

    private let routes: MSIRoutes
    private let lines = Mutex<[Int: Line]>([:])
    private let log: Logger

    init(routes: MSIRoutes, log: Logger) {
        self.routes = routes
        self.log = log
    }

    func signal(vector: Int, address: UInt64, data: UInt32) {
        do {
            let line = try line(for: vector)
            try routes.route(line.gsi, address: address, data: data)
            line.event.signal()
        } catch {
            log.error("MSI vector \(vector) through irqfd: \(error); injecting it directly")
            try? routes.vm.signalMSI(
                addressLow: UInt32(truncatingIfNeeded: address), addressHigh: UInt32(address >> 32), data: data)
        }
    }

    private func line(for vector: Int) throws -> Line {
        try lines.withLock { lines in
            if let line = lines[vector] { return line }
            let line = Line(gsi: try routes.allocate(), event: try EventFD())
            try routes.vm.registerIRQFD(eventfd: line.event.fd, gsi: line.gsi)
            lines[vector] = line
            return line
        }
    }
}
