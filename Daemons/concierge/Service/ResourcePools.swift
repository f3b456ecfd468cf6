/// The limits of what concierge hands out: vsock CIDs, /30 subnets and MAC addresses.
public struct PoolConfiguration: Sendable, Equatable {
    /// CIDs 0–2 are reserved (hypervisor, local, host).
    public var firstCID: UInt32 = 3
    public var lastCID: UInt32 = 0xFFFF
    /// The first /30 (ChromeOS's 100.115.92.24 by default) and how many follow it.
    public var subnetBase = IPv4Address(0x6473_5C18)
    public var subnetCount = 58

    public init() {}

    public init(firstCID: UInt32, lastCID: UInt32, subnetBase: IPv4Address, subnetCount: Int) {
        self.firstCID = firstCID
        self.lastCID = lastCID
        self.subnetBase = subnetBase
        self.subnetCount = subnetCount
    }

    /// The `index`th /30 of the pool.
    public func subnet(_ index: Int) -> IPv4Subnet {
        IPv4Subnet(network: IPv4Address(subnetBase.value &+ UInt32(index) * 4))
    }
}

/// What one VM holds while it exists.
public struct VMResources: Codable, Sendable, Equatable {
    public var cid: UInt32
    /// Which /30 of the pool (``PoolConfiguration/subnet(_:)``).
    public var subnetIndex: Int
    /// Locally administered unicast, `02:xx:xx:xx:xx:xx`.
    public var mac: String
}

/// Why nothing could be handed out.
public enum AllocationError: Error, Equatable, CustomStringConvertible {
    case exhausted(String)
    case alreadyHeld(vm: String)

    public var description: String {
        switch self {
        case .exhausted(let what): return "no \(what) left: every one is held by a VM; stop one first"
        case .alreadyHeld(let vm): return "VM \(vm) already holds resources"
        }
    }
}

/// Every allocation, as persisted: what each VM holds, and where the CID counter stands, so that
/// a restarted concierge neither hands out what a running VM holds nor reuses a CID at once.
public struct ResourcePools: Codable, Sendable, Equatable {
    public private(set) var held: [String: VMResources] = [:]
    /// CIDs are handed out in turn (wrapping), not lowest-first: a guest's old CID is not
    /// someone else's a moment later, while stale host connections may still name it.
    public private(set) var nextCID: UInt32 = 3

    public init() {}

    /// Allocates a CID, a /30 and a MAC for `vm`.
    /// - Parameter random: the source of MAC bytes (tests pass a fixed one).
    public mutating func allocate(
        for vm: String, config: PoolConfiguration, random: () -> UInt64 = { UInt64.random(in: .min ... .max) }
    ) throws(AllocationError) -> VMResources {
        guard held[vm] == nil else { throw .alreadyHeld(vm: vm) }
        let cids = Set(held.values.map(\.cid))
        let span = UInt64(config.lastCID) - UInt64(config.firstCID) + 1
        var cid: UInt32?
        var candidate = (config.firstCID...config.lastCID).contains(nextCID) ? nextCID : config.firstCID
        for _ in 0..<min(span, UInt64(cids.count) + 1) where cid == nil {
            if !cids.contains(candidate) { cid = candidate }
            candidate = candidate >= config.lastCID ? config.firstCID : candidate + 1
        }
        guard let cid else { throw .exhausted("vsock CIDs (\(config.firstCID)–\(config.lastCID))") }
        let subnets = Set(held.values.map(\.subnetIndex))
        guard let subnetIndex = (0..<config.subnetCount).first(where: { !subnets.contains($0) }) else {
            throw .exhausted("IPv4 subnets (\(config.subnetCount) /30s from \(config.subnetBase))")
        }
        let macs = Set(held.values.map(\.mac))
        var mac: String
        repeat { mac = Self.mac(random()) } while macs.contains(mac)
        let resources = VMResources(cid: cid, subnetIndex: subnetIndex, mac: mac)
        held[vm] = resources
        nextCID = cid >= config.lastCID ? config.firstCID : cid + 1
        return resources
    }

    /// Frees what `vm` held; returns it (nil if it held nothing).
    @discardableResult
    public mutating func release(_ vm: String) -> VMResources? {
        held.removeValue(forKey: vm)
    }

    /// `02:` (locally administered, unicast) and five bytes of `bits`.
    static func mac(_ bits: UInt64) -> String {
        ([0x02] + (0..<5).map { UInt8(truncatingIfNeeded: bits >> (8 * $0)) })
            .map { byte in
                let hex = String(byte, radix: 16)
                return hex.count == 1 ? "0" + hex : hex
            }
            .joined(separator: ":")
    }
}
