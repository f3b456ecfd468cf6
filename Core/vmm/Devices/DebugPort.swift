/// The boot-time marker: a guest writes a byte to port 0x80 (as cloud-hypervisor's debug port)
/// and the VMM reports the value and the time since it started, so boot can be measured from
/// inside the guest without a console parser.
public final class DebugPort: BusDevice {
    public static let port: UInt64 = 0x80
    private let onMarker: @Sendable (UInt8) -> Void

    public init(onMarker: @escaping @Sendable (UInt8) -> Void) {
        self.onMarker = onMarker
    }

    public func read(offset: UInt64, data: UnsafeMutableRawBufferPointer) {
        data.storeLittleEndian(0)
    }

    public func write(offset: UInt64, data: UnsafeRawBufferPointer) {
        guard data.count == 1 else { return }
        onMarker(data[0])
    }
}
