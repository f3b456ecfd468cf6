/// An IPv4 address as a 32-bit number, for pool arithmetic (host byte order).
public struct IPv4Address: Hashable, Sendable, Codable, CustomStringConvertible, Comparable {
    public var value: UInt32

    public init(_ value: UInt32) { self.value = value }

    /// Parses dotted-quad notation (`100.115.92.24`); nil for anything else.
    public init?(_ text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var value: UInt32 = 0
        for part in parts {
            guard part.count <= 3, part.allSatisfy(\.isASCII), let byte = UInt8(part) else { return nil }
            value = value << 8 | UInt32(byte)
        }
        self.value = value
    }

    public var description: String {
        (0..<4).reversed().map { String((value >> (8 * UInt32($0))) & 0xFF) }.joined(separator: ".")
    }

    public static func < (a: Self, b: Self) -> Bool { a.value < b.value }
}

/// One VM's /30: the network address, the host's end of the TAP (offset 1) and the guest's
/// (offset 2), as ARCHITECTURE.md fixes them.
public struct IPv4Subnet: Hashable, Sendable, CustomStringConvertible {
    public static let prefixLength = 30
    public let network: IPv4Address

    public init(network: IPv4Address) { self.network = network }

    public var host: IPv4Address { IPv4Address(network.value + 1) }
    public var guest: IPv4Address { IPv4Address(network.value + 2) }
    public var netmask: IPv4Address { IPv4Address(0xFFFF_FFFC) }
    public var description: String { "\(network)/\(Self.prefixLength)" }
}
