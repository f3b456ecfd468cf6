import Synchronization

/// The PC keyboard controller, reduced to what a VM needs: the CPU-reset command (0xFE on port
/// 0x64), which Linux uses for `reboot` with `reboot=k`, and enough of the command protocol
/// for the guest's probe to find a controller with no keyboard.
///
/// Registered at port 0x60 with length 5 (0x60 data, 0x64 status/command).
public final class I8042: BusDevice {
    static let dataOffset: UInt64 = 0
    static let commandOffset: UInt64 = 4
    static let statusOutputFull: UInt8 = 0x01
    static let statusSystemFlag: UInt8 = 0x04
    static let statusCommand: UInt8 = 0x08
    static let commandReset: UInt8 = 0xFE
    static let commandReadConfig: UInt8 = 0x20
    static let commandWriteConfig: UInt8 = 0x60
    static let commandSelfTest: UInt8 = 0xAA
    static let commandInterfaceTest: UInt8 = 0xAB
    static let commandDisablePort2: UInt8 = 0xA7
    static let commandEnablePort2: UInt8 = 0xA8

    struct State {
        var config: UInt8 = 0x30  // both ports disabled, no interrupts
        var output: UInt8?
        var pendingCommand: UInt8?
        var status: UInt8 = statusSystemFlag
    }

    private let state = Mutex(State())
    private let onReset: @Sendable () -> Void

    /// - Parameter onReset: called when the guest pulses the CPU reset line.
    public init(onReset: @escaping @Sendable () -> Void) {
        self.onReset = onReset
    }

    public func read(offset: UInt64, data: UnsafeMutableRawBufferPointer) {
        let value = state.withLock { state -> UInt8 in
            switch offset {
            case Self.dataOffset:
                defer { state.output = nil }
                return state.output ?? 0
            case Self.commandOffset:
                return state.status | (state.output != nil ? Self.statusOutputFull : 0)
            default:
                return 0xFF
            }
        }
        data.storeLittleEndian(UInt64(value))
    }

    public func write(offset: UInt64, data: UnsafeRawBufferPointer) {
        guard data.count == 1 else { return }
        let value = data[0]
        let reset = state.withLock { state -> Bool in
            switch offset {
            case Self.commandOffset:
                state.status |= Self.statusCommand
                switch value {
                case Self.commandReset: return true
                case Self.commandReadConfig: state.output = state.config
                case Self.commandWriteConfig: state.pendingCommand = value
                case Self.commandSelfTest: state.output = 0x55
                case Self.commandInterfaceTest: state.output = 0x00
                default: break
                }
            case Self.dataOffset:
                state.status &= ~Self.statusCommand
                if state.pendingCommand == Self.commandWriteConfig { state.config = value }
                state.pendingCommand = nil
            default:
                break
            }
            return false
        }
        if reset { onReset() }
    }
}
