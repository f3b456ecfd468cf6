import Synchronization

/// An address space (the PIO ports or the MMIO range) that routes guest accesses to devices.
///
/// Ranges can be added and removed while vCPUs run (PCI BARs move when the guest reprograms
/// them), so the table is behind a mutex; lookups are a binary search over sorted ranges.
public final class IOBus: Sendable {
    /// One registered range.
    public struct Range: Sendable {
        public let base: UInt64
        public let length: UInt64
        public let device: any BusDevice

        /// Whether `address` falls inside the range.
        func contains(_ address: UInt64) -> Bool { address >= base && address - base < length }
    }

    /// A name for messages ("pio", "mmio").
    public let name: String
    private let ranges = Mutex<[Range]>([])

    public init(name: String) { self.name = name }

    /// Routes `[base, base + length)` to `device`; overlapping an existing range is an error.
    public func insert(_ device: any BusDevice, base: UInt64, length: UInt64) throws(IOBusError) {
        let end = base.addingReportingOverflow(length)
        guard length > 0, !end.overflow else { throw .invalidRange(bus: name, base: base, length: length) }
        try ranges.withLock { (ranges: inout [Range]) throws(IOBusError) in
            let index = ranges.firstIndex { $0.base >= base } ?? ranges.endIndex
            if index > ranges.startIndex, ranges[index - 1].base + ranges[index - 1].length > base {
                throw .overlap(bus: name, base: base, length: length)
            }
            if index < ranges.endIndex, ranges[index].base < end.partialValue {
                throw .overlap(bus: name, base: base, length: length)
            }
            ranges.insert(Range(base: base, length: length, device: device), at: index)
        }
    }

    /// Removes the range that starts at `base`; returns whether one was there.
    @discardableResult
    public func remove(base: UInt64) -> Bool {
        ranges.withLock { ranges in
            guard let index = ranges.firstIndex(where: { $0.base == base }) else { return false }
            ranges.remove(at: index)
            return true
        }
    }

    /// The range containing `address`.
    public func lookup(_ address: UInt64) -> Range? {
        ranges.withLock { ranges in
            var low = 0
            var high = ranges.count
            while low < high {
                let mid = (low + high) / 2
                if ranges[mid].base <= address { low = mid + 1 } else { high = mid }
            }
            guard low > 0, ranges[low - 1].contains(address) else { return nil }
            return ranges[low - 1]
        }
    }

    /// Dispatches a guest read; returns false (and fills `data` with 0xFF, as an empty bus
    /// floats high) when no device is there.
    @discardableResult
    public func read(_ address: UInt64, data: UnsafeMutableRawBufferPointer) -> Bool {
        guard let range = lookup(address) else {
            for i in 0..<data.count { data[i] = 0xFF }
            return false
        }
        range.device.read(offset: address - range.base, data: data)
        return true
    }

    /// Dispatches a guest write; returns false (and drops it) when no device is there.
    @discardableResult
    public func write(_ address: UInt64, data: UnsafeRawBufferPointer) -> Bool {
        guard let range = lookup(address) else { return false }
        range.device.write(offset: address - range.base, data: data)
        return true
    }
}

// MARK: - Exit dispatch

extension IOBus {
    /// Serves a guest access as a vCPU exit reports it: `count` elements of `size` bytes at one
    /// address (string port instructions repeat the access), written from or read into `data`.
    public func access(_ address: UInt64, isWrite: Bool, size: Int, count: Int = 1, data: UnsafeMutableRawBufferPointer)
    {
        for i in 0..<count {
            let element = UnsafeMutableRawBufferPointer(rebasing: data[(i * size)..<((i + 1) * size)])
            if isWrite {
                write(address, data: UnsafeRawBufferPointer(element))
            } else {
                read(address, data: element)
            }
        }
    }
}

/// Why a bus range could not be registered.
public enum IOBusError: Error, Equatable, CustomStringConvertible {
    case overlap(bus: String, base: UInt64, length: UInt64)
    case invalidRange(bus: String, base: UInt64, length: UInt64)

    public var description: String {
        switch self {
        case .overlap(let bus, let base, let length):
            return "\(bus) range 0x\(String(base, radix: 16)) + \(length) overlaps a registered device"
        case .invalidRange(let bus, let base, let length):
            return "\(bus) range 0x\(String(base, radix: 16)) + \(length) is empty or wraps around"
        }
    }
}
