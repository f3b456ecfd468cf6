import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The MC146818 CMOS RTC at ports 0x70 (index) and 0x71 (data), reporting the host's UTC time
/// in BCD, 24-hour mode, so the guest's clock starts right. Other CMOS bytes are plain storage.
public final class CMOS: BusDevice {
    private let registers = Mutex((index: UInt8(0), bytes: [UInt8](repeating: 0, count: 128)))
    private let now: @Sendable () -> Int

    /// - Parameter now: seconds since the epoch (the host clock by default; tests pass a fixed time).
    public init(now: @escaping @Sendable () -> Int = { time(nil) }) {
        self.now = now
    }

    /// Tells the guest how much RAM there is, as a PC BIOS records it (some guests look).
    public func setMemorySize(bytes: UInt64) {
        registers.withLock { state in
            let above1M = min((bytes > 1 << 20 ? bytes - (1 << 20) : 0) >> 10, 0xFFFF)
            state.bytes[0x17] = UInt8(above1M & 0xFF)
            state.bytes[0x18] = UInt8(above1M >> 8)
            state.bytes[0x30] = state.bytes[0x17]
            state.bytes[0x31] = state.bytes[0x18]
            let above16M = min((bytes > 16 << 20 ? bytes - (16 << 20) : 0) >> 16, 0xFFFF)
            state.bytes[0x34] = UInt8(above16M & 0xFF)
            state.bytes[0x35] = UInt8(above16M >> 8)
        }
    }

    public func read(offset: UInt64, data: UnsafeMutableRawBufferPointer) {
        guard offset == 1, data.count == 1 else {
            data.storeLittleEndian(
                offset == 0 && data.count == 1 ? UInt64(registers.withLock { $0.index }) : UInt64.max)
            return
        }
        let index = registers.withLock { $0.index }
        data[0] = index < 0x0E ? clockRegister(index) : registers.withLock { $0.bytes[Int(index)] }
    }

    public func write(offset: UInt64, data: UnsafeRawBufferPointer) {
        guard data.count == 1 else { return }
        registers.withLock { state in
            if offset == 0 {
                state.index = data[0] & 0x7F  // bit 7 is the NMI mask
            } else if state.index >= 0x0E {
                state.bytes[Int(state.index)] = data[0]
            }
        }
    }

    func clockRegister(_ index: UInt8) -> UInt8 {
        var seconds = now()
        var tm = tm()
        gmtime_r(&seconds, &tm)
        switch index {
        case 0x00: return bcd(tm.tm_sec)
        case 0x02: return bcd(tm.tm_min)
        case 0x04: return bcd(tm.tm_hour)
        case 0x06: return bcd(tm.tm_wday + 1)
        case 0x07: return bcd(tm.tm_mday)
        case 0x08: return bcd(tm.tm_mon + 1)
        case 0x09: return bcd(tm.tm_year % 100)
        case 0x0A: return 0x26  // no update in progress, 32.768 kHz base, 1024 Hz
        case 0x0B: return 0x02  // 24-hour mode, BCD
        case 0x0D: return 0x80  // battery good
        default: return 0
        }
    }

    func bcd(_ value: Int32) -> UInt8 { UInt8(((value / 10) << 4) | (value % 10)) }
}
