/// How guest user and group ids map to host ids and back. The server applies it to ownership
/// it writes (Tsetattr, the owner and group of new files) and reports (Rgetattr).
///
/// The default, ``identity``, passes ids through unchanged. A daemon that shares a folder of one
/// host user into a VM would, for example, map every guest id to that user:
/// `P9IDMapping(hostUID: { _ in 1000 }, guestUID: { $0 == 1000 ? 1000 : 65534 }, ...)`.
public struct P9IDMapping: Sendable {
    /// Guest uid → host uid.
    public var hostUID: @Sendable (UInt32) -> UInt32
    /// Host uid → guest uid.
    public var guestUID: @Sendable (UInt32) -> UInt32
    /// Guest gid → host gid.
    public var hostGID: @Sendable (UInt32) -> UInt32
    /// Host gid → guest gid.
    public var guestGID: @Sendable (UInt32) -> UInt32

    public init(
        hostUID: @escaping @Sendable (UInt32) -> UInt32, guestUID: @escaping @Sendable (UInt32) -> UInt32,
        hostGID: @escaping @Sendable (UInt32) -> UInt32, guestGID: @escaping @Sendable (UInt32) -> UInt32
    ) {
        self.hostUID = hostUID
        self.guestUID = guestUID
        self.hostGID = hostGID
        self.guestGID = guestGID
    }

    /// Ids pass through unchanged.
    public static let identity = P9IDMapping(
        hostUID: { $0 }, guestUID: { $0 }, hostGID: { $0 }, guestGID: { $0 })
}
