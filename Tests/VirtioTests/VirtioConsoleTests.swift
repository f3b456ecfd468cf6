import GuestMemory
import Testing
import VirtioDriver

@testable import Virtio

@Suite("virtio-console")
struct VirtioConsoleTests {
    @Test("what the guest transmits reaches the output, and the buffers come back used")
    func transmit() throws {
        let memory = try makeMemory()
        var driver = try QueueDriver(memory: memory, size: 8)
        var queue = try driver.deviceQueue()
        let written = Collected<[UInt8]>()
        let console = VirtioConsole(output: { written.append($0) })
        let text = try driver.place(Array("hello hvc0\n".utf8))
        let head = try driver.offer([.readable(text, 11)])
        #expect(try console.process(queue: 1, &queue, memory: memory))
        #expect(written.values == [Array("hello hvc0\n".utf8)])
        #expect(try driver.used(0).id == UInt32(head))
    }

    @Test("host input waits for receive buffers, then fills them in order across buffers")
    func receive() throws {
        let memory = try makeMemory()
        var driver = try QueueDriver(memory: memory, size: 8)
        var queue = try driver.deviceQueue()
        let console = VirtioConsole(output: { _ in })
        #expect(console.receive(Array("abcdef".utf8)) == 6)
        // No buffers posted yet: nothing happens and the input stays pending.
        #expect(try !console.process(queue: 0, &queue, memory: memory))
        let first = try driver.allocate(4)
        let second = try driver.allocate(4)
        _ = try driver.offer([.writable(first, 4)])
        _ = try driver.offer([.writable(second, 4)])
        #expect(try console.process(queue: 0, &queue, memory: memory))
        #expect(try memory.read(at: first, count: 4) == Array("abcd".utf8))
        #expect(try memory.read(at: second, count: 2) == Array("ef".utf8))
        #expect(try driver.used(0).length == 4 && driver.used(1).length == 2)
    }

    @Test("input beyond the capacity is refused, not buffered without bound")
    func boundedInput() {
        let console = VirtioConsole(output: { _ in })
        let big = [UInt8](repeating: 0x41, count: VirtioConsole.inputCapacity + 100)
        #expect(console.receive(big) == VirtioConsole.inputCapacity)
        #expect(console.receive([1]) == 0)
        console.reset()
        #expect(console.receive([1]) == 1)
    }
}
