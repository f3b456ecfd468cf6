import EventLoop
import Synchronization
import Testing

@testable import VMM

#if canImport(Glibc)
    import Glibc
#endif

@Suite("CPU lists for --vcpu-affinity and --device-affinity, and placing a thread on one")
struct CPUSetTests {
    @Test("lists parse as taskset writes them and print in compact form")
    func parsing() throws {
        #expect(try CPUSet(parsing: "2").cpus == [2])
        #expect(try CPUSet(parsing: "0-3,6").cpus == [0, 1, 2, 3, 6])
        #expect(try CPUSet(parsing: "6,1-2,2").cpus == [1, 2, 6])
        #expect(try CPUSet(parsing: "1023").cpus == [1023])
        #expect(try CPUSet(parsing: "6,0-3,5").description == "0-3,5-6")
        #expect(CPUSet([4, 0, 2, 1]).description == "0-2,4")
    }

    @Test(
        "malformed lists are refused with the piece that is wrong",
        arguments: ["", "a", "1,,2", "3-1", "-1", "1-", "1-2-3", "1024", "0x1"])
    func malformed(_ text: String) {
        #expect {
            _ = try CPUSet(parsing: text)
        } throws: { error in
            "\(error)".contains("is not a CPU or a range of CPUs")
        }
    }

    @Test("a thread placed on one allowed CPU runs there only; the CPUs it may use are checked first")
    func placing() throws {
        let allowed = CPUSet.allowed()
        let first = try #require(allowed.cpus.first)
        #expect(throws: Never.self) { try allowed.check(for: "--vcpu-affinity") }
        #expect {
            try CPUSet([CPUSet.capacity - 1]).check(for: "--vcpu-affinity")
        } throws: { error in
            "\(error)".contains("--vcpu-affinity 1023: none of these CPUs is available to vmm (it may use \(allowed))")
        }
        // On a thread of its own, so that the test runner's threads keep their CPUs.
        let result = Mutex<String>("not run")
        let thread = try HostThread(name: "placed") {
            do {
                try CPUSet([first]).applyToCurrentThread(for: "--device-affinity")
                result.withLock { $0 = CPUSet.allowed().description }
            } catch { result.withLock { $0 = "\(error)" } }
        }
        thread.join()
        #expect(result.withLock { $0 } == "\(first)")
        #expect(CPUSet.allowed() == allowed)
    }
}
