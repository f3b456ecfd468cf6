/// A PCI function on the VM's root bus.
///
/// The bus serialises nothing: implementations are called from any vCPU thread and protect
/// their own state.
public protocol PCIDevice: AnyObject, Sendable {
    /// Reads `count` bytes of configuration space at `offset`.
    func readConfig(offset: Int, count: Int) -> UInt32
    /// Writes configuration space.
    func writeConfig(offset: Int, count: Int, value: UInt32)
    /// The BARs as currently programmed, and whether memory decoding is on.
    var barState: (bars: [Int: PCIConfigSpace.BAR], memoryEnabled: Bool) { get }
    /// A guest read inside BAR `index`.
    func readBAR(_ index: Int, offset: UInt64, data: UnsafeMutableRawBufferPointer)
    /// A guest write inside BAR `index`.
    func writeBAR(_ index: Int, offset: UInt64, data: UnsafeRawBufferPointer)
    /// BAR `index` now decodes at `address`, or no longer decodes (`nil`): the guest moved it or
    /// turned memory decoding on or off. Devices with fast paths keyed on addresses (KVM
    /// ioeventfds) move them here.
    func barMapped(_ index: Int, at address: UInt64?)
}

extension PCIDevice {
    public func barMapped(_ index: Int, at address: UInt64?) {}
}
