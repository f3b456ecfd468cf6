/// The host side of a ``VirtioNet``: a non-blocking descriptor on which each read returns one
/// frame and each write sends one, every frame led by a 12-byte `virtio_net_hdr_v1`.
///
/// A ``TapDevice`` in the VMM; the fuzz target uses a datagram socket pair.
public protocol NetBackend: AnyObject, Sendable {
    /// The descriptor frames are read from and written to; valid for the backend's lifetime.
    var fd: Int32 { get }

    /// Sets which offloads frames read from ``fd`` may carry (those the guest accepted).
    func setOffload(_ offload: TapOffload) throws(TapError)
}

/// Offloads the kernel may leave to a TAP's reader (TUNSETOFFLOAD): frames read may then carry
/// a partial checksum (VIRTIO_NET_HDR_F_NEEDS_CSUM) or be TCP segments of up to 64 KiB.
public struct TapOffload: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// TUN_F_CSUM: partial checksums; required by every other offload.
    public static let checksum = TapOffload(rawValue: 0x01)
    /// TUN_F_TSO4: TCP over IPv4 segmentation.
    public static let tso4 = TapOffload(rawValue: 0x02)
    /// TUN_F_TSO6: TCP over IPv6 segmentation.
    public static let tso6 = TapOffload(rawValue: 0x04)
    /// TUN_F_TSO_ECN: segments with the ECN CWR bit.
    public static let tsoECN = TapOffload(rawValue: 0x08)
}
