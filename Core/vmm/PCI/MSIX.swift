import Synchronization

/// Delivers one MSI message: table entry `vector` with the address and data the guest
/// programmed into it (a signaler may cache a route per vector; the message says when it changed).
public protocol MSISignaler: Sendable {
    func signal(vector: Int, address: UInt64, data: UInt32)
}

/// An MSI-X table and pending-bit array, and the rules for when a vector may fire.
///
/// The table lives in a BAR (the owner forwards reads and writes at ``tableOffset`` and
/// ``pbaOffset``); the capability's enable and function-mask bits live in config space and are
/// mirrored here by ``updateControl(_:)``.
public final class MSIXTable: Sendable {
    public static let capabilityID: UInt8 = 0x11
    static let entrySize = 16
    static let controlEnable: UInt16 = 0x8000
    static let controlFunctionMask: UInt16 = 0x4000
    static let vectorMasked: UInt32 = 0x1

    struct Entry {
        var addressLow: UInt32 = 0
        var addressHigh: UInt32 = 0
        var data: UInt32 = 0
        var control: UInt32 = vectorMasked
    }

    struct State {
        var entries: [Entry]
        var pending: [Bool]
        var enabled = false
        var functionMasked = false
    }

    public let vectorCount: Int
    private let state: Mutex<State>
    private let signaler: any MSISignaler

    public init(vectors: Int, signaler: any MSISignaler) {
        precondition((1...2048).contains(vectors))
        vectorCount = vectors
        state = Mutex(
            State(entries: Array(repeating: Entry(), count: vectors), pending: Array(repeating: false, count: vectors)))
        self.signaler = signaler
    }

    /// Bytes the table occupies in its BAR.
    public var tableSize: Int { vectorCount * Self.entrySize }
    /// Bytes the PBA occupies (whole qwords).
    public var pbaSize: Int { ((vectorCount + 63) / 64) * 8 }

    /// The capability body (after ID and next pointer) for a table at `tableOffset` and PBA at
    /// `pbaOffset`, both in BAR `bar`.
    public func capabilityBody(bar: UInt8, tableOffset: UInt32, pbaOffset: UInt32) -> [UInt8] {
        let control = UInt16(vectorCount - 1)
        let table = tableOffset | UInt32(bar)
        let pba = pbaOffset | UInt32(bar)
        var body = [UInt8(control & 0xFF), UInt8(control >> 8)]
        for word in [table, pba] { body += (0..<4).map { UInt8(truncatingIfNeeded: word >> (8 * $0)) } }
        return body
    }

    /// Mask of the writable bits in the message-control high byte (enable, function mask).
    public static let controlHighByteWritable: UInt8 = 0xC0

    /// Applies the message-control word the guest wrote to config space.
    public func updateControl(_ control: UInt16) {
        let fire = state.withLock { state -> [(Int, UInt64, UInt32)] in
            state.enabled = control & Self.controlEnable != 0
            state.functionMasked = control & Self.controlFunctionMask != 0
            return Self.drainPending(&state)
        }
        for (vector, address, data) in fire { signaler.signal(vector: vector, address: address, data: data) }
    }

    /// Whether MSI-X is enabled (the device must not use INTx then).
    public var isEnabled: Bool { state.withLock { $0.enabled } }

    /// Whether `vector` is masked (by its entry or the whole function) and whether it waits
    /// pending, for `vmm status`; nil for a vector the table does not have.
    public func vectorState(_ vector: Int) -> (masked: Bool, pending: Bool)? {
        state.withLock { state in
            guard vector >= 0, vector < state.entries.count else { return nil }
            let masked =
                !state.enabled || state.functionMasked || state.entries[vector].control & Self.vectorMasked != 0
            return (masked, state.pending[vector])
        }
    }

    /// Fires `vector`, or marks it pending while masked. Out-of-range vectors are ignored.
    public func trigger(_ vector: Int) {
        let message = state.withLock { state -> (UInt64, UInt32)? in
            guard state.enabled, vector >= 0, vector < state.entries.count else { return nil }
            let entry = state.entries[vector]
            if state.functionMasked || entry.control & Self.vectorMasked != 0 {
                state.pending[vector] = true
                return nil
            }
            return (UInt64(entry.addressHigh) << 32 | UInt64(entry.addressLow), entry.data)
        }
        if let (address, data) = message { signaler.signal(vector: vector, address: address, data: data) }
    }

    // MARK: - BAR access

    public func readTable(offset: Int, data: UnsafeMutableRawBufferPointer) {
        let value = state.withLock { state -> UInt64 in
            let index = offset / Self.entrySize
            guard index < state.entries.count, data.count == 4 || data.count == 8 else { return UInt64.max }
            let entry = state.entries[index]
            let words = [entry.addressLow, entry.addressHigh, entry.data, entry.control]
            let word = (offset % Self.entrySize) / 4
            let low = UInt64(words[word])
            return data.count == 8 && word % 2 == 0 ? low | UInt64(words[word + 1]) << 32 : low
        }
        data.storeLittleEndian(value)
    }

    public func writeTable(offset: Int, data: UnsafeRawBufferPointer) {
        guard data.count == 4 || data.count == 8 else { return }
        let value = data.littleEndianValue
        let fire = state.withLock { state -> [(Int, UInt64, UInt32)] in
            let index = offset / Self.entrySize
            guard index < state.entries.count else { return [] }
            let first = (offset % Self.entrySize) / 4
            let words =
                data.count == 8
                ? [UInt32(truncatingIfNeeded: value), UInt32(value >> 32)] : [UInt32(truncatingIfNeeded: value)]
            for (i, word) in words.enumerated() where first + i < 4 {
                switch first + i {
                case 0: state.entries[index].addressLow = word
                case 1: state.entries[index].addressHigh = word
                case 2: state.entries[index].data = word
                default: state.entries[index].control = word & Self.vectorMasked
                }
            }
            return Self.drainPending(&state)
        }
        for (vector, address, data) in fire { signaler.signal(vector: vector, address: address, data: data) }
    }

    public func readPBA(offset: Int, data: UnsafeMutableRawBufferPointer) {
        let value = state.withLock { state -> UInt64 in
            var bits: UInt64 = 0
            let first = (offset / 8) * 64
            for bit in 0..<64 where first + bit < state.pending.count && state.pending[first + bit] {
                bits |= 1 << UInt64(bit)
            }
            return data.count == 4 && offset % 8 == 4 ? bits >> 32 : bits
        }
        data.storeLittleEndian(value)
    }

    /// Messages for pending vectors that are now unmasked; clears their pending bits.
    private static func drainPending(_ state: inout State) -> [(Int, UInt64, UInt32)] {
        guard state.enabled, !state.functionMasked else { return [] }
        var fire: [(Int, UInt64, UInt32)] = []
        for i in state.entries.indices where state.pending[i] && state.entries[i].control & vectorMasked == 0 {
            state.pending[i] = false
            fire.append(
                (
                    i, UInt64(state.entries[i].addressHigh) << 32 | UInt64(state.entries[i].addressLow),
                    state.entries[i].data
                ))
        }
        return fire
    }
}
