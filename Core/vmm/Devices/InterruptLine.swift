/// An interrupt a device raises: an edge on a GSI of the in-kernel irqchip, or an MSI.
public protocol InterruptLine: Sendable {
    /// Signals the interrupt once (edge).
    func trigger()
}
