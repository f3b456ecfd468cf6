// swift-tools-version: 6.1
// vmtools: Linux VMs on an ordinary Linux host, the way ChromeOS runs Crostini.
// Folder map: ARCHITECTURE.md. One target per concern; C only in small shim targets.
import PackageDescription

let package = Package(
    name: "vmtools",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "vmm", targets: ["vmm"]),
        .executable(name: "maitred", targets: ["maitred"]),
        .executable(name: "vmtoolsctl", targets: ["vmtoolsctl"]),
        .executable(name: "concierge", targets: ["concierge"]),
        .executable(name: "seneschal", targets: ["seneschal"]),
        .executable(name: "seneschal-server", targets: ["seneschal-server"]),
        .executable(name: "mojo-proxy", targets: ["mojo-proxy"]),
        .executable(name: "garcon", targets: ["garcon"]),
        .executable(name: "cicerone", targets: ["cicerone"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        .package(url: "https://github.com/grpc/grpc-swift-2", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf", from: "2.4.1"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport", from: "2.9.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        // MARK: - Core: the VMM and its pieces
        .target(name: "CKVM", path: "Core/CKVM"),
        .target(name: "CLinux", path: "Core/CLinux"),
        .systemLibrary(name: "CSeccomp", path: "Core/CSeccomp", providers: [.apt(["libseccomp-dev"])]),
        // Processes a daemon starts or adopts, held through pidfds (VMMs, 9P servers).
        .target(name: "Processes", dependencies: ["CLinux", "EventLoop"], path: "Core/Processes"),
        // Least privilege for every process of the project: seccomp allowlists, capabilities.
        .target(name: "Sandbox", dependencies: ["CSeccomp"], path: "Core/Sandbox"),
        .target(name: "GuestMemory", path: "Core/vmm/GuestMemory"),
        .target(name: "EventLoop", dependencies: ["CLinux"], path: "Core/vmm/EventLoop"),
        .target(name: "KVM", dependencies: ["CKVM"], path: "Core/vmm/KVM"),
        .target(name: "X86", dependencies: ["KVM", "CKVM", "GuestMemory"], path: "Core/vmm/X86"),
        .target(name: "Devices", dependencies: ["GuestMemory"], path: "Core/vmm/Devices"),
        .target(name: "PCI", dependencies: ["Devices"], path: "Core/vmm/PCI"),
        .target(
            name: "Virtio", dependencies: ["PCI", "Devices", "GuestMemory", "EventLoop", "CLinux"],
            path: "Core/vmm/Virtio"),
        .target(
            name: "VMM",
            dependencies: [
                "KVM", "CKVM", "CLinux", "X86", "GuestMemory", "EventLoop", "Devices", "PCI", "Virtio", "Sandbox",
            ],
            path: "Core/vmm/VMM"),
        .executableTarget(
            name: "vmm",
            dependencies: [
                "VMM", "KVM", "CKVM", "X86", "GuestMemory", "Devices",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Core/vmm/vmm"),

        // MARK: - Host <-> guest: protocol, guest agent, host client

        // The gRPC API between host and guest: protos and their committed generated code.
        .target(
            name: "GuestProtocol",
            dependencies: [
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            path: "Core/Protocol", exclude: ["protos"]),
        .target(name: "CGuestSystem", path: "Guest/CGuestSystem"),
        // Where guest agents listen and call: vsock or Unix socket addresses and their transports.
        .target(
            name: "GuestTransport",
            dependencies: [.product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport")],
            path: "Guest/Transport"),
        // maitred's services and the init duties of PID 1, as a library the tests drive directly.
        .target(
            name: "GuestAgent",
            dependencies: [
                "GuestProtocol", "GuestTransport", "CGuestSystem", "CLinux", "EventLoop",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Guest/maitred/Agent"),
        .executableTarget(
            name: "maitred", dependencies: ["GuestAgent", "GarconAgent", "GuestTransport", "CGuestSystem"],
            path: "Guest/maitred/main"),
        // garcon's view of the container's applications: desktop entries, Exec lines, icons.
        .target(name: "DesktopEntries", path: "Guest/garcon/DesktopEntries"),
        // garcon, the agent in a guest's container: its services, and the executable.
        .target(
            name: "GarconAgent",
            dependencies: [
                "DesktopEntries", "GuestProtocol", "GuestTransport", "CGuestSystem", "CLinux", "EventLoop",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
            ],
            path: "Guest/garcon/Agent"),
        .executableTarget(
            name: "garcon", dependencies: ["GarconAgent", "DesktopEntries", "GuestTransport"], path: "Guest/garcon/main"
        ),
        // What the host uses to reach a guest: maitred and shell clients, the startup listener,
        // and the bridge over vmm's `CONNECT <port>` vsock socket.
        .target(
            name: "GuestClient",
            dependencies: [
                "GuestProtocol", "EventLoop",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
            ],
            path: "Core/GuestClient"),
        .executableTarget(
            name: "vmtoolsctl",
            dependencies: [
                "GuestClient", "GuestProtocol", "DBus",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
            ],
            path: "Clients/vmtoolsctl"),

        // MARK: - D-Bus
        // libsystemd (sd-bus, sd-daemon, sd-journal) plus run-time sd_bus_vtable builders.
        .systemLibrary(
            name: "CSystemd", path: "Core/CSystemd", pkgConfig: "libsystemd", providers: [.apt(["libsystemd-dev"])]),
        // The daemons' D-Bus binding: one bus thread per connection, typed values, exported objects.
        .target(name: "DBus", dependencies: ["CSystemd", "EventLoop"], path: "Core/DBus"),
        // A swift-log handler writing structured journald entries (stderr when there is no journal).
        .target(
            name: "Journal",
            dependencies: ["CSystemd", .product(name: "Logging", package: "swift-log")],
            path: "Core/Journal"),

        // MARK: - 9P
        // The 9P2000.L file server seneschal runs per share: codec, confinement beneath the export
        // root (openat2 through CP9System), fids as O_PATH descriptors, parallel requests per session.
        .target(name: "CP9System", path: "Core/CP9System"),
        .target(name: "P9", dependencies: ["CP9System", "EventLoop"], path: "Core/P9"),

        // MARK: - mojo-proxy
        // A flat FUSE file system of stand-in files whose I/O another process serves: how a
        // regular file passed across the VM boundary becomes a real descriptor.
        .target(name: "Fuse", dependencies: ["CLinux", "EventLoop"], path: "Core/Fuse"),
        // The protocol between the guest's and the host's mojo-proxy: its proto, the committed
        // generated messages, and the framing.
        .target(
            name: "MojoProxy",
            dependencies: [
                "CLinux", "EventLoop", "Fuse", .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            path: "Core/MojoProxy", exclude: ["protos"]),

        // Both ends of mojo-proxy (`host` on the host, `guest` inside a VM).
        .executableTarget(
            name: "mojo-proxy",
            dependencies: [
                "MojoProxy", "EventLoop", "CGuestSystem", "CLinux", "Processes",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Daemons/mojo-proxy"),

        // MARK: - Daemons

        // concierge's logic as a library the tests drive: resource pools, persisted state, VMs,
        // disk images and its D-Bus interface.
        .target(
            name: "ConciergeService",
            dependencies: [
                "CLinux", "DBus", "EventLoop", "GuestClient", "GuestProtocol", "Processes",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
            ],
            path: "Daemons/concierge/Service"),
        .executableTarget(
            name: "concierge",
            dependencies: [
                "ConciergeService", "DBus", "Journal", "Processes",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Daemons/concierge/main"),

        // seneschal's logic as a library the tests drive: servers, shares and its D-Bus interface.
        .target(
            name: "SeneschalService", dependencies: ["CLinux", "DBus", "EventLoop", "Processes"],
            path: "Daemons/seneschal/Service"),
        .executableTarget(
            name: "seneschal",
            dependencies: [
                "SeneschalService", "DBus", "Journal", "Processes",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Daemons/seneschal/main"),
        // cicerone's logic as a library the tests drive: container definitions, the per-VM
        // ContainerListener with its token checks, calls to maitred and garcon, its D-Bus interface.
        .target(
            name: "CiceroneService",
            dependencies: [
                "DBus", "GuestClient", "GuestProtocol",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
            ],
            path: "Daemons/cicerone/Service"),
        .executableTarget(
            name: "cicerone",
            dependencies: [
                "CiceroneService", "DBus", "Journal", "Processes",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Daemons/cicerone/main"),
        // One sandboxed 9P server per StartServer (ChromeOS's 9s).
        .executableTarget(
            name: "seneschal-server",
            dependencies: [
                "P9", "Sandbox", "CLinux", "EventLoop",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Daemons/seneschal/server"),

        // MARK: - Tests
        // Fuzz targets: `tools/fuzz NAME` builds them with libFuzzer; a plain build replays inputs.
        .target(name: "FuzzSupport", path: "Tests/Fuzz/FuzzSupport"),
        .executableTarget(
            name: "fuzz-virtqueue", dependencies: ["Virtio", "GuestMemory", "FuzzSupport"],
            path: "Tests/Fuzz/virtqueue",
            exclude: ["corpus"]),
        .executableTarget(
            name: "fuzz-kernel-loader", dependencies: ["X86", "GuestMemory", "FuzzSupport"],
            path: "Tests/Fuzz/kernel-loader",
            exclude: ["corpus"]),
        .executableTarget(
            name: "fuzz-p9", dependencies: ["P9", "FuzzSupport"], path: "Tests/Fuzz/p9", exclude: ["corpus"]),
        .executableTarget(
            name: "fuzz-mojo-frame", dependencies: ["MojoProxy", "FuzzSupport"], path: "Tests/Fuzz/mojo-frame",
            exclude: ["corpus"]),
        .executableTarget(
            name: "fuzz-desktop-entry", dependencies: ["DesktopEntries", "FuzzSupport"],
            path: "Tests/Fuzz/desktop-entry", exclude: ["corpus"]),
        // Serves a folder with Core/P9 on a Unix socket for the Linux-client test in the testbed.
        .executableTarget(name: "p9-serve", dependencies: ["P9"], path: "Tests/P9Serve"),
        // Both ends of a service that passes descriptors, for mojo-proxy through a VM (testbed, bench).
        .executableTarget(
            name: "mojo-probe", dependencies: ["CLinux", "CGuestSystem", "EventLoop"], path: "Tests/MojoProbe"),
        .testTarget(name: "GuestMemoryTests", dependencies: ["GuestMemory"], path: "Tests/GuestMemoryTests"),
        .testTarget(name: "EventLoopTests", dependencies: ["EventLoop"], path: "Tests/EventLoopTests"),
        .testTarget(
            name: "KVMTests", dependencies: ["KVM", "CKVM", "X86", "GuestMemory", "Devices", "EventLoop"],
            path: "Tests/KVMTests"),
        .testTarget(name: "DevicesTests", dependencies: ["Devices", "GuestMemory"], path: "Tests/DevicesTests"),
        .testTarget(name: "PCITests", dependencies: ["PCI", "Devices"], path: "Tests/PCITests"),
        // The driver side of a virtqueue in guest memory, for the device tests and the vsock probe.
        .target(name: "VirtioDriver", dependencies: ["Virtio", "GuestMemory"], path: "Tests/VirtioDriver"),
        .testTarget(
            name: "VirtioTests", dependencies: ["Virtio", "VirtioDriver", "PCI", "Devices", "GuestMemory"],
            path: "Tests/VirtioTests"),
        // Drives virtio-vsock from a simulated guest on this machine, to measure the device's cost.
        .executableTarget(
            name: "vsock-probe", dependencies: ["Virtio", "VirtioDriver", "EventLoop", "GuestMemory"],
            path: "Tests/VsockProbe"),
        .target(name: "SandboxProbe", dependencies: ["CSeccomp"], path: "Tests/SandboxProbe"),
        .testTarget(
            name: "SandboxTests", dependencies: ["Sandbox", "SandboxProbe", "CSeccomp"], path: "Tests/SandboxTests"),
        .testTarget(
            name: "VMMTests", dependencies: ["VMM", "Sandbox", "SandboxProbe", "CSeccomp", "EventLoop"],
            path: "Tests/VMMTests"),
        .testTarget(
            name: "GuestAgentTests",
            dependencies: [
                "GuestAgent", "GuestClient", "GuestProtocol", "GuestTransport", "EventLoop",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
            ],
            path: "Tests/GuestAgentTests"),
        // Where the tests find the package's executables.
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        // A private dbus-daemon for the tests of everything on D-Bus.
        .target(name: "DBusTestSupport", dependencies: ["DBus"], path: "Tests/DBusTestSupport"),
        .testTarget(
            name: "ConciergeTests",
            dependencies: ["ConciergeService", "DBus", "DBusTestSupport", "Processes", "TestSupport"],
            path: "Tests/ConciergeTests"),
        .testTarget(
            name: "DBusTests",
            dependencies: [
                "DBus", "DBusTestSupport", "Journal", "CSystemd", .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/DBusTests"),
        .testTarget(
            name: "MojoProxyTests", dependencies: ["MojoProxy", "Fuse", "CLinux", "EventLoop", "TestSupport"],
            path: "Tests/MojoProxyTests"),
        .testTarget(name: "ProcessesTests", dependencies: ["Processes"], path: "Tests/ProcessesTests"),
        .testTarget(
            name: "DesktopEntriesTests", dependencies: ["DesktopEntries"], path: "Tests/DesktopEntriesTests"),
        .testTarget(
            name: "GarconTests",
            dependencies: [
                "GarconAgent", "DesktopEntries", "GuestProtocol", "GuestTransport", "TestSupport",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
            ],
            path: "Tests/GarconTests"),
        .testTarget(
            name: "CiceroneTests",
            dependencies: [
                "CiceroneService", "DBus", "DBusTestSupport", "GuestProtocol", "TestSupport",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2Posix", package: "grpc-swift-nio-transport"),
            ],
            path: "Tests/CiceroneTests"),
        .testTarget(
            name: "SeneschalTests",
            dependencies: ["SeneschalService", "DBus", "DBusTestSupport", "CLinux", "TestSupport"],
            path: "Tests/SeneschalTests"),
        .testTarget(name: "P9Tests", dependencies: ["P9", "CP9System"], path: "Tests/P9Tests"),
        .testTarget(name: "X86Tests", dependencies: ["X86", "GuestMemory", "KVM", "CKVM"], path: "Tests/X86Tests"),
    ],
    swiftLanguageModes: [.v6]
)
