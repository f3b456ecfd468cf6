import Synchronization

/// The ACPI sleep control and status registers of a hardware-reduced platform (two I/O ports):
/// a write of SLP_EN with sleep type S5 is the guest powering off.
public final class SleepControl: BusDevice {
    private let s5: UInt8
    private let onPowerOff: @Sendable () -> Void

    /// - Parameters:
    ///   - s5SleepType: the SLP_TYP value the DSDT's `\_S5` declares.
    ///   - onPowerOff: called when the guest enters S5.
    public init(s5SleepType: UInt8, onPowerOff: @escaping @Sendable () -> Void) {
        self.s5 = s5SleepType
        self.onPowerOff = onPowerOff
    }

    public func read(offset: UInt64, data: UnsafeMutableRawBufferPointer) {
        data.storeLittleEndian(0)
    }

    public func write(offset: UInt64, data: UnsafeRawBufferPointer) {
        guard offset == 0, data.count == 1 else { return }
        let value = data[0]
        // SLP_TYP is bits 2..4, SLP_EN bit 5 (ACPI 6, 4.8.3.7).
        if value & 0x20 != 0 && (value >> 2) & 0x7 == s5 { onPowerOff() }
    }
}
