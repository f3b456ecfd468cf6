import Synchronization

/// A 16550A-compatible UART (the PC's COM1 at 0x3F8, IRQ 4): the guest console.
///
/// Transmitted bytes go to `output`; bytes given to ``receive(_:)`` (the host's stdin) appear in
/// the receive FIFO. Loopback mode, which Linux's 8250 driver uses to probe the UART, is
/// emulated as on real hardware. The receive FIFO is bounded: input beyond it is dropped, not
/// buffered without limit.
public final class Serial8250: BusDevice {
    /// Register offsets from the base port.
    enum Register {
        static let data = 0  // RBR/THR, or DLL with DLAB
        static let interruptEnable = 1  // IER, or DLM with DLAB
        static let interruptIdentify = 2  // IIR on read, FCR on write
        static let lineControl = 3
        static let modemControl = 4
        static let lineStatus = 5
        static let modemStatus = 6
        static let scratch = 7
    }

    static let ierReceivedData: UInt8 = 0x01
    static let ierTransmitEmpty: UInt8 = 0x02
    static let iirNone: UInt8 = 0x01
    static let iirTransmitEmpty: UInt8 = 0x02
    static let iirReceivedData: UInt8 = 0x04
    static let iirFIFOEnabled: UInt8 = 0xC0
    static let lcrDLAB: UInt8 = 0x80
    static let lsrDataReady: UInt8 = 0x01
    static let lsrTransmitEmpty: UInt8 = 0x20
    static let lsrIdle: UInt8 = 0x40
    static let mcrLoopback: UInt8 = 0x10
    /// Without loopback: carrier detect, data set ready, clear to send.
    static let msrConnected: UInt8 = 0xB0
    /// Bytes the receive FIFO holds before input is dropped.
    public static let receiveCapacity = 4096

    struct State {
        var interruptEnable: UInt8 = 0
        var lineControl: UInt8 = 0x03
        var modemControl: UInt8 = 0x08
        var scratch: UInt8 = 0
        var divisor: UInt16 = 12  // 9600 baud
        var fifoEnabled = false
        var transmitInterruptPending = false
        var receive: [UInt8] = []
        var receiveHead = 0
        var dropped = 0

        var receiveCount: Int { receive.count - receiveHead }
        var loopback: Bool { modemControl & mcrLoopback != 0 }

        mutating func popReceived() -> UInt8? {
            guard receiveHead < receive.count else { return nil }
            let byte = receive[receiveHead]
            receiveHead += 1
            if receiveHead == receive.count || receiveHead > 1024 {
                receive.removeFirst(receiveHead)
                receiveHead = 0
            }
            return byte
        }

        /// Pushes bytes into the FIFO; returns how many were accepted.
        mutating func push(_ bytes: some Collection<UInt8>) -> Int {
            let room = Serial8250.receiveCapacity - receiveCount
            let accepted = min(room, bytes.count)
            receive.append(contentsOf: bytes.prefix(accepted))
            dropped += bytes.count - accepted
            return accepted
        }

        var interruptIdentity: UInt8 {
            if interruptEnable & ierReceivedData != 0 && receiveCount > 0 { return iirReceivedData }
            if interruptEnable & ierTransmitEmpty != 0 && transmitInterruptPending { return iirTransmitEmpty }
            return iirNone
        }
    }

    private let state = Mutex(State())
    private let interrupt: any InterruptLine
    private let output: @Sendable (UInt8) -> Void

    /// - Parameters:
    ///   - interrupt: IRQ 4 on a PC.
    ///   - output: called with each byte the guest transmits (outside loopback).
    public init(interrupt: any InterruptLine, output: @escaping @Sendable (UInt8) -> Void) {
        self.interrupt = interrupt
        self.output = output
    }

    /// Queues host input for the guest; returns how many bytes fit in the FIFO.
    @discardableResult
    public func receive(_ bytes: some Collection<UInt8>) -> Int {
        let (accepted, raise) = state.withLock { state in
            let accepted = state.push(bytes)
            return (accepted, accepted > 0 && state.interruptEnable & Self.ierReceivedData != 0)
        }
        if raise { interrupt.trigger() }
        return accepted
    }

    /// Input bytes dropped because the guest did not read them fast enough.
    public var droppedInput: Int { state.withLock { $0.dropped } }

    public func read(offset: UInt64, data: UnsafeMutableRawBufferPointer) {
        guard data.count == 1 else {
            data.storeLittleEndian(0)
            return
        }
        let (value, raise) = state.withLock { state -> (UInt8, Bool) in
            let dlab = state.lineControl & Self.lcrDLAB != 0
            switch Int(offset) {
            case Register.data where dlab:
                return (UInt8(truncatingIfNeeded: state.divisor), false)
            case Register.data:
                let byte = state.popReceived() ?? 0
                return (byte, false)
            case Register.interruptEnable where dlab:
                return (UInt8(state.divisor >> 8), false)
            case Register.interruptEnable:
                return (state.interruptEnable, false)
            case Register.interruptIdentify:
                let identity = state.interruptIdentity
                // Reading IIR while it reports THR-empty acknowledges that interrupt.
                if identity == Self.iirTransmitEmpty { state.transmitInterruptPending = false }
                return (identity | (state.fifoEnabled ? Self.iirFIFOEnabled : 0), false)
            case Register.lineControl:
                return (state.lineControl, false)
            case Register.modemControl:
                return (state.modemControl, false)
            case Register.lineStatus:
                let ready = state.receiveCount > 0 ? Self.lsrDataReady : 0
                return (ready | Self.lsrTransmitEmpty | Self.lsrIdle, false)
            case Register.modemStatus:
                if state.loopback {
                    // Loopback wires DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD.
                    let mcr = state.modemControl
                    let value = ((mcr & 0x01) << 5) | ((mcr & 0x02) << 3) | ((mcr & 0x04) << 4) | ((mcr & 0x08) << 4)
                    return (value, false)
                }
                return (Self.msrConnected, false)
            case Register.scratch:
                return (state.scratch, false)
            default:
                return (0, false)
            }
        }
        data[0] = value
        if raise { interrupt.trigger() }
    }

    public func write(offset: UInt64, data: UnsafeRawBufferPointer) {
        guard data.count == 1 else { return }
        let value = data[0]
        var transmitted: UInt8?
        let raise = state.withLock { state -> Bool in
            let dlab = state.lineControl & Self.lcrDLAB != 0
            switch Int(offset) {
            case Register.data where dlab:
                state.divisor = (state.divisor & 0xFF00) | UInt16(value)
            case Register.data:
                if state.loopback {
                    _ = state.push(CollectionOfOne(value))
                } else {
                    transmitted = value
                }
                state.transmitInterruptPending = true
                return state.interruptIdentity != Self.iirNone
            case Register.interruptEnable where dlab:
                state.divisor = (state.divisor & 0x00FF) | UInt16(value) << 8
            case Register.interruptEnable:
                let wasEnabled = state.interruptEnable & Self.ierTransmitEmpty != 0
                state.interruptEnable = value & 0x0F
                // Enabling the THR-empty interrupt while THR is empty interrupts at once:
                // Linux starts transmission this way.
                if !wasEnabled && value & Self.ierTransmitEmpty != 0 { state.transmitInterruptPending = true }
                return state.interruptIdentity != Self.iirNone
            case Register.interruptIdentify:
                state.fifoEnabled = value & 0x01 != 0
                if value & 0x02 != 0 {
                    state.receive.removeAll()
                    state.receiveHead = 0
                }
            case Register.lineControl:
                state.lineControl = value
            case Register.modemControl:
                state.modemControl = value & 0x1F
            case Register.scratch:
                state.scratch = value
            default:
                break
            }
            return false
        }
        if let transmitted { output(transmitted) }
        if raise { interrupt.trigger() }
    }
}
