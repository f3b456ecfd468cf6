/// An Ethernet address for a guest NIC: six bytes, unicast, not all zeros.
public struct MACAddress: Sendable, Hashable, CustomStringConvertible {
    /// The six bytes, in transmission order.
    public let bytes: [UInt8]

    /// Checks six bytes: a multicast (or broadcast) address or all zeros is refused.
    public init(bytes: [UInt8]) throws(MACAddressError) {
        guard bytes.count == 6 else { throw .syntax("\(bytes.count) bytes") }
        let text = Self.format(bytes)
        guard bytes.contains(where: { $0 != 0 }) else { throw .zero }
        guard bytes[0] & 1 == 0 else { throw .multicast(text) }
        self.bytes = bytes
    }

    /// Parses `XX:XX:XX:XX:XX:XX` (hex digits, either case).
    public init(parsing text: String) throws(MACAddressError) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        var bytes: [UInt8] = []
        for part in parts {
            guard part.count == 2, part.allSatisfy(\.isHexDigit), let byte = UInt8(part, radix: 16) else {
                throw .syntax(text)
            }
            bytes.append(byte)
        }
        guard bytes.count == 6 else { throw .syntax(text) }
        try self.init(bytes: bytes)
    }

    /// A random locally administered unicast address: `02:` and five random bytes.
    public static func random() -> MACAddress {
        var generator = SystemRandomNumberGenerator()
        let bytes = [0x02] + (0..<5).map { _ in UInt8.random(in: 0...255, using: &generator) }
        // 02: unicast, locally administered, and never all zeros.
        return MACAddress(checked: bytes)
    }

    private init(checked bytes: [UInt8]) { self.bytes = bytes }

    /// Whether the locally administered bit (bit 1 of the first byte) is set.
    public var isLocallyAdministered: Bool { bytes[0] & 2 != 0 }

    /// Lowercase `xx:xx:xx:xx:xx:xx`.
    public var description: String { Self.format(bytes) }

    static func format(_ bytes: [UInt8]) -> String {
        bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined(separator: ":")
    }
}

/// Why a MAC address was refused.
public enum MACAddressError: Error, Equatable, CustomStringConvertible {
    case syntax(String)
    case multicast(String)
    case zero

    public var description: String {
        switch self {
        case .syntax(let text):
            return "'\(text)' is not a MAC address: expected six hex pairs separated by colons, like 02:00:00:12:34:56"
        case .multicast(let text):
            return "\(text) is a multicast address (the low bit of the first byte is set); a NIC needs a unicast one"
        case .zero: return "00:00:00:00:00:00 is not a usable MAC address"
        }
    }
}
