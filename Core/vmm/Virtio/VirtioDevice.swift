import EventLoop
import GuestMemory

/// A virtio device behind a transport: what it offers, its configuration space, and how it
/// serves its queues. The transport owns the queues and calls in under its own lock, so a
/// device sees one call at a time.
public protocol VirtioDevice: AnyObject, Sendable {
    /// Virtio device ID (1 net, 2 block, 3 console, 4 entropy, 19 vsock).
    var deviceType: UInt16 { get }
    /// Device-specific feature bits; the transport adds VIRTIO_F_VERSION_1.
    var features: UInt64 { get }
    /// Maximum size of each queue; the count is the number of queues.
    var queueMaxSizes: [UInt16] { get }
    /// PCI class code (defaults to "other").
    var pciClassCode: UInt32 { get }
    /// MSI-X vectors the PCI transport offers (defaults to one per queue and one for
    /// configuration changes). With fewer than that, Linux gives all queues one shared vector.
    var msixVectors: Int { get }

    func readConfig(offset: Int, data: UnsafeMutableRawBufferPointer)
    func writeConfig(offset: Int, data: UnsafeRawBufferPointer)

    /// Serves the available requests of queue `index`; returns whether any were completed.
    func process(queue index: Int, _ queue: inout Virtqueue, memory: GuestMemory) throws(VirtqueueError) -> Bool

    /// The driver reset the device.
    func reset()

    /// The driver set FEATURES_OK and the transport accepted `features` (VIRTIO_F_VERSION_1
    /// included): what the device may now rely on, such as the offloads a NIC's guest takes.
    func driverFeaturesAcked(_ features: UInt64)
}

extension VirtioDevice {
    public var pciClassCode: UInt32 { 0xFF_0000 }
    public var msixVectors: Int { queueMaxSizes.count + 1 }
    public func writeConfig(offset: Int, data: UnsafeRawBufferPointer) {}
    public func reset() {}
    public func driverFeaturesAcked(_ features: UInt64) {}
}

/// A device with host descriptors (sockets, a TAP) served on the VMM's device thread.
public protocol EventLoopDevice: VirtioDevice {
    /// Starts watching the device's host descriptors on `loop`; `notify` must serve the queue it
    /// is given (the transport's `notify(queue:)`), and is called on the loop's thread.
    func start(on loop: EventLoop, notify: @escaping @Sendable (Int) -> Void) throws(VirtioDeviceError)
}

/// Feature bits and status bits shared by all devices.
public enum VirtioFeature {
    /// VIRTIO_F_EVENT_IDX: each side tells the other at which ring index it next wants to be
    /// notified (used_event, avail_event), so kicks and interrupts happen once per batch.
    public static let eventIndex: UInt64 = 1 << 29
    public static let version1: UInt64 = 1 << 32
}

public enum VirtioStatus {
    public static let acknowledge: UInt8 = 1
    public static let driver: UInt8 = 2
    public static let driverOK: UInt8 = 4
    public static let featuresOK: UInt8 = 8
    public static let needsReset: UInt8 = 0x40
    public static let failed: UInt8 = 0x80
}
