// swift-tools-version: 6.1
// vmtools: Linux VMs on an ordinary Linux host, the way ChromeOS runs Crostini.
// Folder map: ARCHITECTURE.md. One target per concern; C only in small shim targets.
import PackageDescription

let package = Package(
    name: "vmtools",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "vmm", targets: ["vmm"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2")
    ],
    targets: [
        // MARK: - Core: the VMM and its pieces
        .target(name: "CKVM", path: "Core/CKVM"),
        .target(name: "GuestMemory", path: "Core/vmm/GuestMemory"),
        .target(name: "KVM", dependencies: ["CKVM"], path: "Core/vmm/KVM"),
        .target(name: "X86", dependencies: ["KVM", "CKVM", "GuestMemory"], path: "Core/vmm/X86"),
        .target(name: "Devices", dependencies: ["GuestMemory"], path: "Core/vmm/Devices"),
        .target(name: "PCI", dependencies: ["Devices"], path: "Core/vmm/PCI"),
        .target(name: "Virtio", dependencies: ["PCI", "Devices", "GuestMemory"], path: "Core/vmm/Virtio"),
        .target(
            name: "VMM", dependencies: ["KVM", "CKVM", "X86", "GuestMemory", "Devices", "PCI", "Virtio"],
            path: "Core/vmm/VMM"),
        .executableTarget(
            name: "vmm",
            dependencies: [
                "VMM", "KVM", "CKVM", "X86", "GuestMemory", "Devices",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Core/vmm/vmm"),

        // MARK: - Tests
        // Fuzz targets: `tools/fuzz NAME` builds them with libFuzzer; a plain build replays inputs.
        .executableTarget(
            name: "fuzz-virtqueue", dependencies: ["Virtio", "GuestMemory"], path: "Tests/Fuzz/virtqueue"),
        .testTarget(name: "GuestMemoryTests", dependencies: ["GuestMemory"], path: "Tests/GuestMemoryTests"),
        .testTarget(
            name: "KVMTests", dependencies: ["KVM", "CKVM", "X86", "GuestMemory", "Devices"], path: "Tests/KVMTests"),
        .testTarget(name: "DevicesTests", dependencies: ["Devices", "GuestMemory"], path: "Tests/DevicesTests"),
        .testTarget(name: "PCITests", dependencies: ["PCI", "Devices"], path: "Tests/PCITests"),
        .testTarget(
            name: "VirtioTests", dependencies: ["Virtio", "PCI", "Devices", "GuestMemory"], path: "Tests/VirtioTests"),
        .testTarget(name: "X86Tests", dependencies: ["X86", "GuestMemory", "KVM", "CKVM"], path: "Tests/X86Tests"),
    ],
    swiftLanguageModes: [.v6]
)
