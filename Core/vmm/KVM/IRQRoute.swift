import CKVM

/// One entry of KVM's GSI routing table: what a global system interrupt number raises.
public struct IRQRoute: Sendable, Equatable {
    public enum Target: Sendable, Equatable {
        /// A pin of an in-kernel interrupt controller (0 master PIC, 1 slave PIC, 2 IOAPIC).
        case irqchip(chip: UInt32, pin: UInt32)
        /// A message-signalled interrupt with this address and data.
        case msi(address: UInt64, data: UInt32)
    }

    public var gsi: UInt32
    public var target: Target

    public init(gsi: UInt32, target: Target) {
        self.gsi = gsi
        self.target = target
    }

    /// Number of IOAPIC pins, and so of GSIs the legacy routes use.
    public static let ioapicPins: UInt32 = 24

    /// The routes KVM installs with `KVM_CREATE_IRQCHIP`: GSIs 0–15 to both PICs and the IOAPIC,
    /// 16–23 to the IOAPIC only. Setting a routing table replaces them, so every table starts here.
    public static let defaultIRQChipRoutes: [IRQRoute] = (0..<ioapicPins).flatMap { gsi -> [IRQRoute] in
        let ioapic = IRQRoute(gsi: gsi, target: .irqchip(chip: UInt32(KVM_IRQCHIP_IOAPIC), pin: gsi))
        guard gsi < 16 else { return [ioapic] }
        let pic = IRQRoute(
            gsi: gsi,
            target: .irqchip(chip: UInt32(gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE), pin: gsi % 8))
        return [pic, ioapic]
    }
}
