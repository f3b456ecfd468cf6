import CLinux

#if canImport(Glibc)
    import Glibc
#endif

/// A set of host CPUs, written as `taskset -c` and cgroups write them ("0-3,6"), and the
/// placement of the calling thread on one.
///
/// The VMM places its vCPU threads and its device thread when asked (`--vcpu-affinity`,
/// `--device-affinity`), as libvirt's vcpupin and emulatorpin do: on a host with few CPUs,
/// keeping the device thread off the vCPUs' CPUs spares the guest preemptions.
public struct CPUSet: Sendable, Equatable, CustomStringConvertible {
    /// The CPUs, ascending, each once.
    public let cpus: [Int]

    /// The most CPUs Linux's `cpu_set_t` holds: a larger number cannot be asked for.
    static let capacity = 1024
    private static let words = capacity / 64

    public init(_ cpus: some Sequence<Int>) {
        self.cpus = Array(Set(cpus)).sorted()
    }

    /// Parses "N", "N-M" and comma-separated lists of those.
    public init(parsing text: String) throws(VMMError) {
        var cpus: [Int] = []
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            let bounds = item.split(separator: "-", omittingEmptySubsequences: false)
            guard (1...2).contains(bounds.count), let low = Int(bounds[0]), let high = Int(bounds[bounds.count - 1]),
                low >= 0, low <= high, high < Self.capacity
            else {
                throw VMMError(
                    "CPU list \"\(text)\": \"\(item)\" is not a CPU or a range of CPUs (such as 2 or 0-3) below \(Self.capacity)"
                )
            }
            cpus += low...high
        }
        self.init(cpus)
    }

    /// The compact form: "0-3,6".
    public var description: String {
        var parts: [String] = []
        var index = 0
        while index < cpus.count {
            var end = index
            while end + 1 < cpus.count, cpus[end + 1] == cpus[end] + 1 { end += 1 }
            parts.append(end == index ? "\(cpus[index])" : "\(cpus[index])-\(cpus[end])")
            index = end + 1
        }
        return parts.joined(separator: ",")
    }

    /// The CPUs the calling thread may run on now.
    public static func allowed() -> CPUSet {
        var mask = [UInt64](repeating: 0, count: words)
        guard clinux_get_thread_cpus(&mask, Int32(words)) == 0 else { return CPUSet([]) }
        return CPUSet((0..<capacity).filter { mask[$0 / 64] >> ($0 % 64) & 1 != 0 })
    }

    /// Checks that a thread could run here: that some of these CPUs are among those the calling
    /// thread may use now (a cgroup's cpuset, the parent's affinity, the CPUs online). `option`
    /// names the setting in the error.
    public func check(for option: String) throws(VMMError) {
        let allowed = Self.allowed()
        guard !Set(cpus).isDisjoint(with: allowed.cpus) else {
            throw VMMError("\(option) \(self): none of these CPUs is available to vmm (it may use \(allowed))")
        }
    }

    /// Restricts the calling thread, and the threads it starts from now on, to these CPUs. It
    /// makes one system call, sched_setaffinity (which the sandbox allows when placing threads).
    public func applyToCurrentThread(for option: String) throws(VMMError) {
        var mask = [UInt64](repeating: 0, count: Self.words)
        for cpu in cpus { mask[cpu / 64] |= 1 << UInt64(cpu % 64) }
        let result = clinux_set_thread_cpus(mask, Int32(Self.words))
        guard result == 0 else {
            throw VMMError("\(option) \(self): sched_setaffinity failed: \(String(cString: strerror(-result)))")
        }
    }
}
