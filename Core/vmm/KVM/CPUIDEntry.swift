import CKVM

/// One CPUID leaf as KVM describes it (`struct kvm_cpuid_entry2`).
public struct CPUIDEntry: Sendable, Equatable {
    public var function: UInt32
    public var index: UInt32
    public var flags: UInt32
    public var eax: UInt32
    public var ebx: UInt32
    public var ecx: UInt32
    public var edx: UInt32

    public init(
        function: UInt32, index: UInt32 = 0, flags: UInt32 = 0, eax: UInt32 = 0, ebx: UInt32 = 0, ecx: UInt32 = 0,
        edx: UInt32 = 0
    ) {
        self.function = function
        self.index = index
        self.flags = flags
        self.eax = eax
        self.ebx = ebx
        self.ecx = ecx
        self.edx = edx
    }

    init(_ raw: kvm_cpuid_entry2) {
        self.init(
            function: raw.function, index: raw.index, flags: raw.flags, eax: raw.eax, ebx: raw.ebx, ecx: raw.ecx,
            edx: raw.edx)
    }

    var raw: kvm_cpuid_entry2 {
        var entry = kvm_cpuid_entry2()
        entry.function = function
        entry.index = index
        entry.flags = flags
        entry.eax = eax
        entry.ebx = ebx
        entry.ecx = ecx
        entry.edx = edx
        return entry
    }

    /// Builds a `struct kvm_cpuid2` with room for `capacity` entries, lets `body` fill it through
    /// the kernel, and returns the entries the kernel reported with `body`'s errno (0 = success).
    static func withKVMCPUID2(capacity: Int, _ body: (UnsafeMutableRawPointer) -> Int32) -> ([CPUIDEntry], Int32) {
        withKVMCPUID2(entries: [], capacity: capacity, body)
    }

    /// Builds a `struct kvm_cpuid2` holding `entries` (room for `capacity`) and calls `body` with it.
    static func withKVMCPUID2(entries: [CPUIDEntry], capacity: Int, _ body: (UnsafeMutableRawPointer) -> Int32) -> (
        [CPUIDEntry], Int32
    ) {
        let header = MemoryLayout<kvm_cpuid2>.size
        let stride = MemoryLayout<kvm_cpuid_entry2>.stride
        let bytes = header + stride * capacity
        let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 8)
        defer { raw.deallocate() }
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
        let cpuid = raw.assumingMemoryBound(to: kvm_cpuid2.self)
        cpuid.pointee.nent = UInt32(max(entries.count, capacity))
        let table = (raw + header).assumingMemoryBound(to: kvm_cpuid_entry2.self)
        if !entries.isEmpty {
            cpuid.pointee.nent = UInt32(entries.count)
            for (i, entry) in entries.enumerated() { table[i] = entry.raw }
        }
        let code = body(raw)
        let count = min(Int(cpuid.pointee.nent), capacity)
        return ((0..<count).map { CPUIDEntry(table[$0]) }, code)
    }
}
