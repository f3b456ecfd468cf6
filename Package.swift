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
        .target(name: "CLinux", path: "Core/CLinux"),
        .systemLibrary(name: "CSeccomp", path: "Core/CSeccomp", providers: [.apt(["libseccomp-dev"])]),
        // Least privilege for every process of the project: seccomp allowlists, capabilities.
        .target(name: "Sandbox", dependencies: ["CSeccomp"], path: "Core/Sandbox"),
        .target(name: "GuestMemory", path: "Core/vmm/GuestMemory"),
        .target(name: "EventLoop", dependencies: ["CLinux"], path: "Core/vmm/EventLoop"),
        .target(name: "KVM", dependencies: ["CKVM"], path: "Core/vmm/KVM"),
        .target(name: "X86", dependencies: ["KVM", "CKVM", "GuestMemory"], path: "Core/vmm/X86"),
        .target(name: "Devices", dependencies: ["GuestMemory"], path: "Core/vmm/Devices"),
        .target(name: "PCI", dependencies: ["Devices"], path: "Core/vmm/PCI"),
        .target(name: "Virtio", dependencies: ["PCI", "Devices", "GuestMemory", "EventLoop"], path: "Core/vmm/Virtio"),
        .target(
            name: "VMM",
            dependencies: ["KVM", "CKVM", "X86", "GuestMemory", "EventLoop", "Devices", "PCI", "Virtio", "Sandbox"],
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
        .target(name: "FuzzSupport", path: "Tests/Fuzz/FuzzSupport"),
        .executableTarget(
            name: "fuzz-virtqueue", dependencies: ["Virtio", "GuestMemory", "FuzzSupport"], path: "Tests/Fuzz/virtqueue",
            exclude: ["corpus"]),
        .executableTarget(
            name: "fuzz-kernel-loader", dependencies: ["X86", "GuestMemory", "FuzzSupport"], path: "Tests/Fuzz/kernel-loader",
            exclude: ["corpus"]),
        .testTarget(name: "GuestMemoryTests", dependencies: ["GuestMemory"], path: "Tests/GuestMemoryTests"),
        .testTarget(name: "EventLoopTests", dependencies: ["EventLoop"], path: "Tests/EventLoopTests"),
        .testTarget(
            name: "KVMTests", dependencies: ["KVM", "CKVM", "X86", "GuestMemory", "Devices", "EventLoop"],
            path: "Tests/KVMTests"),
        .testTarget(name: "DevicesTests", dependencies: ["Devices", "GuestMemory"], path: "Tests/DevicesTests"),
        .testTarget(name: "PCITests", dependencies: ["PCI", "Devices"], path: "Tests/PCITests"),
        .testTarget(
            name: "VirtioTests", dependencies: ["Virtio", "PCI", "Devices", "GuestMemory"], path: "Tests/VirtioTests"),
        .target(name: "SandboxProbe", dependencies: ["CSeccomp"], path: "Tests/SandboxProbe"),
        .testTarget(
            name: "SandboxTests", dependencies: ["Sandbox", "SandboxProbe", "CSeccomp"], path: "Tests/SandboxTests"),
        .testTarget(
            name: "VMMTests", dependencies: ["VMM", "Sandbox", "SandboxProbe", "CSeccomp"], path: "Tests/VMMTests"),
        .testTarget(name: "X86Tests", dependencies: ["X86", "GuestMemory", "KVM", "CKVM"], path: "Tests/X86Tests"),
    ],
    swiftLanguageModes: [.v6]
)
