import Testing

@testable import VMM

/// `vmm run`'s `--tap`, `--tap-fd` and `--mac`, as ``VMConfig/NetConfig/fromOptions(tap:tapFD:mac:)``
/// turns them into a NIC or a message for the user.
@Suite("vmm run's network options")
struct NetConfigTests {
    /// The message the options are refused with, or nil when they are accepted.
    func refusal(tap: String? = nil, tapFD: Int32? = nil, mac: String? = nil) -> String? {
        do {
            _ = try VMConfig.NetConfig.fromOptions(tap: tap, tapFD: tapFD, mac: mac)
            return nil
        } catch {
            return error.description
        }
    }

    @Test("no TAP, no NIC")
    func none() throws {
        #expect(try VMConfig.NetConfig.fromOptions(tap: nil, tapFD: nil, mac: nil) == nil)
    }

    @Test("--tap NAME with --mac gives that MAC; without, a random locally administered unicast one")
    func byName() throws {
        let given = try VMConfig.NetConfig.fromOptions(tap: "tap0", tapFD: nil, mac: "02:AA:bb:cc:dd:01")
        #expect(given?.tap == .name("tap0"))
        #expect(given.map { "\($0.mac)" } == "02:aa:bb:cc:dd:01")
        let random = try VMConfig.NetConfig.fromOptions(tap: "tap0", tapFD: nil, mac: nil)
        #expect(random.map { "\($0.mac)".hasPrefix("02:") } == true)
    }

    @Test("--tap-fd N takes an inherited descriptor above stderr")
    func byDescriptor() throws {
        #expect(try VMConfig.NetConfig.fromOptions(tap: nil, tapFD: 5, mac: nil)?.tap == .fd(5))
        #expect(refusal(tapFD: 2)?.contains("--tap-fd 2") == true)
        #expect(refusal(tapFD: -1)?.contains("--tap-fd -1") == true)
    }

    @Test("--tap and --tap-fd together, or --mac alone, are refused")
    func exclusive() {
        #expect(refusal(tap: "tap0", tapFD: 3)?.contains("mutually exclusive") == true)
        #expect(refusal(mac: "02:00:00:00:00:01")?.contains("--mac needs --tap or --tap-fd") == true)
    }

    @Test(
        "a malformed or multicast --mac is refused, naming the option and the problem",
        arguments: [
            ("02:00:00:00:00", "not a MAC address"), ("zz:00:00:00:00:01", "not a MAC address"),
            ("01:00:5e:00:00:01", "multicast"), ("ff:ff:ff:ff:ff:ff", "multicast"),
            ("00:00:00:00:00:00", "not a usable MAC"),
        ])
    func badMAC(text: String, problem: String) {
        let message = refusal(tap: "tap0", mac: text)
        #expect(message?.hasPrefix("--mac: ") == true, "\(message ?? "accepted")")
        #expect(message?.contains(problem) == true, "\(message ?? "accepted")")
    }
}
