import Testing

@testable import Devices

@Suite("16550 UART")
struct Serial8250Tests {
    // Register offsets.
    static let data: UInt64 = 0
    static let ier: UInt64 = 1
    static let iir: UInt64 = 2  // FCR on write
    static let lcr: UInt64 = 3
    static let mcr: UInt64 = 4
    static let lsr: UInt64 = 5
    static let msr: UInt64 = 6
    static let scratch: UInt64 = 7

    let interrupt = CountingInterrupt()
    let output = Collected<UInt8>()
    let uart: Serial8250

    init() {
        let output = output
        uart = Serial8250(interrupt: interrupt, output: { output.append($0) })
    }

    @Test("at reset: no interrupt pending, transmitter empty, no data, 8N1, modem lines connected")
    func resetState() {
        #expect(uart.readByte(Self.iir) == 0x01)
        #expect(uart.readByte(Self.lsr) == 0x60)
        #expect(uart.readByte(Self.ier) == 0)
        #expect(uart.readByte(Self.lcr) == 0x03)
        #expect(uart.readByte(Self.mcr) == 0x08)
        #expect(uart.readByte(Self.msr) == 0xB0)
        #expect(uart.readByte(Self.data) == 0)
        #expect(uart.droppedInput == 0)
    }

    @Test("transmitted bytes reach the output closure in order, without an interrupt while IER is 0")
    func transmit() {
        for byte in Array("Hi!\n".utf8) { uart.writeByte(Self.data, byte) }
        #expect(output.values == Array("Hi!\n".utf8))
        #expect(interrupt.triggers == 0)
        #expect(uart.readByte(Self.lsr) & 0x60 == 0x60)  // THR empty and idle again at once
        #expect(uart.readByte(Self.iir) == 0x01)
    }

    @Test("enabling THRI interrupts at once; reading IIR (0x02) acknowledges it and the next read is 0x01")
    func transmitInterrupt() {
        uart.writeByte(Self.ier, 0x02)
        #expect(interrupt.triggers == 1)
        #expect(uart.readByte(Self.ier) == 0x02)
        #expect(uart.readByte(Self.iir) == 0x02)
        #expect(uart.readByte(Self.iir) == 0x01)
        // Writing IER again with THRI already on does not raise a new interrupt.
        uart.writeByte(Self.ier, 0x02)
        #expect(interrupt.triggers == 1)
        #expect(uart.readByte(Self.iir) == 0x01)
    }

    @Test("each transmitted byte with THRI enabled raises a THR-empty interrupt")
    func transmitRaisesInterrupt() {
        uart.writeByte(Self.ier, 0x02)
        _ = uart.readByte(Self.iir)
        uart.writeByte(Self.data, 0x41)
        #expect(interrupt.triggers == 2)
        #expect(output.values == [0x41])
        #expect(uart.readByte(Self.iir) == 0x02)
        #expect(uart.readByte(Self.iir) == 0x01)
    }

    @Test("toggling THRI off and on interrupts again (how Linux restarts transmission)")
    func thriToggle() {
        uart.writeByte(Self.ier, 0x02)
        _ = uart.readByte(Self.iir)
        uart.writeByte(Self.ier, 0x00)
        #expect(uart.readByte(Self.iir) == 0x01)
        uart.writeByte(Self.ier, 0x02)
        #expect(interrupt.triggers == 2)
        #expect(uart.readByte(Self.iir) == 0x02)
    }

    @Test("IER keeps only its low four bits")
    func ierMask() {
        uart.writeByte(Self.ier, 0xF0)
        #expect(uart.readByte(Self.ier) == 0)
        #expect(interrupt.triggers == 0)
    }

    @Test("received bytes set LSR data-ready and are read from offset 0 in order")
    func receive() {
        #expect(uart.receive([0x31, 0x32, 0x33]) == 3)
        #expect(uart.readByte(Self.lsr) & 0x01 == 0x01)
        #expect(uart.readByte(Self.data) == 0x31)
        #expect(uart.readByte(Self.lsr) & 0x01 == 0x01)
        #expect(uart.readByte(Self.data) == 0x32)
        #expect(uart.readByte(Self.data) == 0x33)
        #expect(uart.readByte(Self.lsr) == 0x60)
        #expect(uart.readByte(Self.data) == 0)  // empty FIFO reads 0
        #expect(interrupt.triggers == 0)  // IER bit 0 is clear
        #expect(output.values.isEmpty)
    }

    @Test("with IER bit 0 set, input interrupts and IIR reports 0x04 until the FIFO is drained")
    func receiveInterrupt() {
        uart.writeByte(Self.ier, 0x01)
        #expect(interrupt.triggers == 0)
        uart.receive([0x61, 0x62])
        #expect(interrupt.triggers == 1)
        #expect(uart.readByte(Self.iir) == 0x04)
        #expect(uart.readByte(Self.iir) == 0x04)  // not acknowledged by reading IIR
        #expect(uart.readByte(Self.data) == 0x61)
        #expect(uart.readByte(Self.iir) == 0x04)
        #expect(uart.readByte(Self.data) == 0x62)
        #expect(uart.readByte(Self.iir) == 0x01)
        uart.receive([0x63])
        #expect(interrupt.triggers == 2)
    }

    @Test("received data takes priority over THR empty in IIR")
    func interruptPriority() {
        uart.writeByte(Self.ier, 0x03)
        uart.receive([0x7A])
        #expect(uart.readByte(Self.iir) == 0x04)
        _ = uart.readByte(Self.data)
        #expect(uart.readByte(Self.iir) == 0x02)
        #expect(uart.readByte(Self.iir) == 0x01)
    }

    @Test("an empty receive() neither queues nor interrupts")
    func emptyReceive() {
        uart.writeByte(Self.ier, 0x01)
        #expect(uart.receive([UInt8]()) == 0)
        #expect(interrupt.triggers == 0)
        #expect(uart.readByte(Self.lsr) & 0x01 == 0)
    }

    @Test("DLAB switches offsets 0 and 1 to the divisor latch, and back")
    func divisorLatch() {
        uart.writeByte(Self.ier, 0x05)
        uart.writeByte(Self.lcr, 0x83)
        #expect(uart.readByte(Self.data) == 12)  // 9600 baud at reset
        #expect(uart.readByte(Self.ier) == 0)
        uart.writeByte(Self.data, 0x01)
        uart.writeByte(Self.ier, 0x02)
        #expect(uart.readByte(Self.data) == 0x01)
        #expect(uart.readByte(Self.ier) == 0x02)
        #expect(output.values.isEmpty)  // the DLL write is not a transmission
        #expect(interrupt.triggers == 0)  // nor is the DLM write an IER write
        #expect(uart.readByte(Self.lcr) == 0x83)

        uart.writeByte(Self.lcr, 0x03)
        #expect(uart.readByte(Self.ier) == 0x05)  // IER was left alone
        uart.receive([0x44])
        #expect(uart.readByte(Self.data) == 0x44)
        uart.writeByte(Self.data, 0x45)
        #expect(output.values == [0x45])

        uart.writeByte(Self.lcr, 0x80)
        #expect(uart.readByte(Self.data) == 0x01)
        #expect(uart.readByte(Self.ier) == 0x02)
    }

    @Test("in loopback a transmitted byte comes back in the receive FIFO instead of the output")
    func loopback() {
        uart.writeByte(Self.mcr, 0x10)
        uart.writeByte(Self.data, 0x5A)
        #expect(output.values.isEmpty)
        #expect(uart.readByte(Self.lsr) & 0x01 == 0x01)
        #expect(uart.readByte(Self.data) == 0x5A)
        #expect(uart.readByte(Self.lsr) & 0x01 == 0)
        uart.writeByte(Self.mcr, 0x00)
        uart.writeByte(Self.data, 0x5B)
        #expect(output.values == [0x5B])
        #expect(uart.readByte(Self.lsr) & 0x01 == 0)
    }

    @Test("loopback with IER bit 0 set interrupts for the looped-back byte")
    func loopbackInterrupt() {
        uart.writeByte(Self.ier, 0x01)
        uart.writeByte(Self.mcr, 0x10)
        uart.writeByte(Self.data, 0x11)
        #expect(interrupt.triggers == 1)
        #expect(uart.readByte(Self.iir) == 0x04)
    }

    @Test(
        "in loopback MSR mirrors MCR: DTR to DSR, RTS to CTS, OUT1 to RI, OUT2 to DCD",
        arguments: [
            (0x10, 0x00), (0x11, 0x20), (0x12, 0x10), (0x14, 0x40), (0x18, 0x80), (0x1F, 0xF0), (0x1B, 0xB0),
        ] as [(UInt8, UInt8)])
    func loopbackModemStatus(mcr: UInt8, msr: UInt8) {
        uart.writeByte(Self.mcr, mcr)
        #expect(uart.readByte(Self.msr) == msr)
    }

    @Test("outside loopback MSR reports carrier, DSR and CTS whatever MCR holds", arguments: [UInt8(0x00), 0x03, 0x0F])
    func modemStatusConnected(mcr: UInt8) {
        uart.writeByte(Self.mcr, mcr)
        #expect(uart.readByte(Self.msr) == 0xB0)
    }

    @Test("MCR keeps only its low five bits")
    func mcrMask() {
        uart.writeByte(Self.mcr, 0xFF)
        #expect(uart.readByte(Self.mcr) == 0x1F)
    }

    @Test("the receive FIFO holds receiveCapacity bytes and droppedInput counts the rest")
    func boundedFIFO() {
        let capacity = Serial8250.receiveCapacity
        #expect(uart.receive([UInt8](repeating: 0x2E, count: capacity + 10)) == capacity)
        #expect(uart.droppedInput == 10)
        #expect(uart.receive([0x2F, 0x30]) == 0)
        #expect(uart.droppedInput == 12)
        // Reading one byte makes room for exactly one.
        _ = uart.readByte(Self.data)
        #expect(uart.receive([0x2F, 0x30]) == 1)
        #expect(uart.droppedInput == 13)
        var drained = 0
        while uart.readByte(Self.lsr) & 0x01 != 0 {
            let byte = uart.readByte(Self.data)
            drained += 1
            if drained == capacity { #expect(byte == 0x2F) } else { #expect(byte == 0x2E) }
            if drained > capacity { break }
        }
        #expect(drained == capacity)
    }

    @Test("a loopback byte into a full FIFO is dropped and counted")
    func loopbackIntoFullFIFO() {
        uart.receive([UInt8](repeating: 1, count: Serial8250.receiveCapacity))
        uart.writeByte(Self.mcr, 0x10)
        uart.writeByte(Self.data, 2)
        #expect(uart.droppedInput == 1)
        #expect(output.values.isEmpty)
    }

    @Test("bytes come out in order across long interleaved receives and reads")
    func orderAcrossRefills() {
        let pattern = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 8) }
        var sent = 0
        var received: [UInt8] = []
        while received.count < pattern.count {
            if sent < pattern.count {
                let chunk = pattern[sent..<min(sent + 1000, pattern.count)]
                sent += uart.receive(chunk)
            }
            for _ in 0..<900 where uart.readByte(Self.lsr) & 0x01 != 0 {
                received.append(uart.readByte(Self.data))
            }
        }
        #expect(received == pattern)
        #expect(uart.droppedInput == 0)
    }

    @Test("writing FCR with bit 1 clears the receive FIFO")
    func fifoReset() {
        uart.receive([1, 2, 3, 4, 5])
        _ = uart.readByte(Self.data)
        uart.writeByte(Self.iir, 0x02)
        #expect(uart.readByte(Self.lsr) & 0x01 == 0)
        #expect(uart.readByte(Self.data) == 0)
        uart.receive([9])
        #expect(uart.readByte(Self.data) == 9)
    }

    @Test("FCR bit 0 enables the FIFOs, which IIR reports in bits 6-7")
    func fifoEnable() {
        uart.receive([1, 2])
        uart.writeByte(Self.iir, 0x01)
        #expect(uart.readByte(Self.iir) == 0xC1)
        #expect(uart.readByte(Self.lsr) & 0x01 == 0x01)  // bit 1 clear: data kept
        uart.writeByte(Self.ier, 0x01)
        #expect(uart.readByte(Self.iir) == 0xC4)
        uart.writeByte(Self.iir, 0x00)
        #expect(uart.readByte(Self.iir) == 0x04)
    }

    @Test("the scratch register stores a byte")
    func scratchRegister() {
        uart.writeByte(Self.scratch, 0xC3)
        #expect(uart.readByte(Self.scratch) == 0xC3)
    }

    @Test("offsets past the register file read 0 and ignore writes", arguments: [UInt64(8), 0x100])
    func outsideRegisters(offset: UInt64) {
        uart.writeByte(offset, 0x41)
        #expect(uart.readByte(offset) == 0)
        #expect(output.values.isEmpty)
    }

    @Test("accesses wider than a byte read 0 and are ignored on write", arguments: [2, 4, 8])
    func wideAccesses(size: Int) {
        uart.receive([0x77])
        for offset in UInt64(0)..<8 {
            #expect(uart.readWide(offset, size: size) == 0)
            uart.writeWide(offset, 0x8383_8383_8383_8383, size: size)
        }
        #expect(output.values.isEmpty)
        #expect(interrupt.triggers == 0)
        #expect(uart.readByte(Self.lcr) == 0x03)
        #expect(uart.readByte(Self.data) == 0x77)  // the wide data read did not consume it
    }

    @Test("a zero-length access does not crash")
    func emptyAccess() {
        uart.read(offset: 0, data: UnsafeMutableRawBufferPointer(start: nil, count: 0))
        uart.write(offset: 0, data: UnsafeRawBufferPointer(start: nil, count: 0))
        #expect(output.values.isEmpty)
    }
}
