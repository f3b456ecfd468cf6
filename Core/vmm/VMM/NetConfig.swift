import Virtio

extension VMConfig {
    /// A virtio-net NIC whose host side is a TAP interface.
    public struct NetConfig: Sendable, Equatable {
        /// Where the TAP comes from.
        public enum TapSource: Sendable, Equatable {
            /// Attach to (or create, with CAP_NET_ADMIN) the TAP interface with this name.
            case name(String)
            /// Take over this inherited descriptor, already attached to a TAP with IFF_TAP,
            /// IFF_NO_PI and IFF_VNET_HDR (how an unprivileged vmm gets one from its manager).
            case fd(Int32)
        }

        public var tap: TapSource
        /// The guest NIC's address (the TAP's own address is the host side's).
        public var mac: MACAddress

        public init(tap: TapSource, mac: MACAddress = .random()) {
            self.tap = tap
            self.mac = mac
        }

        /// The NIC that `vmm run --tap NAME | --tap-fd N [--mac MAC]` asks for: nil without a TAP,
        /// a random locally administered MAC without `--mac`.
        public static func fromOptions(tap: String?, tapFD: Int32?, mac: String?) throws(VMMError) -> NetConfig? {
            let source: TapSource
            switch (tap, tapFD) {
            case (nil, nil):
                guard mac == nil else { throw VMMError("--mac needs --tap or --tap-fd") }
                return nil
            case (.some, .some): throw VMMError("--tap and --tap-fd are mutually exclusive; give one")
            case (let name?, nil): source = .name(name)
            case (nil, let fd?):
                // 0-2 are stdin, stdout and stderr, which vmm uses for the console.
                guard fd > 2 else {
                    throw VMMError("--tap-fd \(fd) is not an inherited TAP descriptor (use 3 or above)")
                }
                source = .fd(fd)
            }
            guard let mac else { return NetConfig(tap: source) }
            do { return NetConfig(tap: source, mac: try MACAddress(parsing: mac)) } catch {
                throw VMMError("--mac: \(error)")
            }
        }
    }
}
