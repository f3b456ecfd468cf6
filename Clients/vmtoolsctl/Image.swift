import ArgumentParser
import Foundation

/// `vmtoolsctl image build`: the guest image builder, as installed (`tools/build-guest-image`).
struct Image: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Guest images under /var/lib/vmtools/images.", subcommands: [Build.self])

    struct Build: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Build a guest image from Debian's packages: the stock kernel and an initramfs with maitred as init.")

        @Option(help: "Image name (a folder under --dest).")
        var name = "default"

        @Option(help: "Where images live.")
        var dest = "/var/lib/vmtools/images"

        @Option(help: "The maitred binary to put in the image (default: the one installed beside vmtoolsctl).")
        var maitred: String?

        @Flag(
            help:
                "Also build a Debian root disk (rootfs.img, debootstrap; needs root). Boot it with maitred.root=/dev/vda."
        )
        var rootfs = false

        @Option(help: "Size of the root disk (sparse), such as 4G.")
        var rootfsSize = "4G"

        @Option(help: "Extra Debian packages for the root disk, separated by commas.")
        var packages: String?

        mutating func run() throws {
            let installed = Self.installPrefix()
            let script = "\(installed)/lib/vmtools/build-guest-image"
            guard FileManager.default.isExecutableFile(atPath: script) else {
                throw ValidationError("the image builder is not installed at \(script) (tools/install puts it there)")
            }
            let agent = maitred ?? "\(installed)/libexec/vmtools/maitred"
            let process = Process()
            process.executableURL = URL(fileURLWithPath: script)
            process.arguments = ["--name", name, "--dest", dest, "--maitred", agent]
            if rootfs { process.arguments? += ["--rootfs", "--rootfs-size", rootfsSize] }
            if let packages { process.arguments? += ["--packages", packages] }
            try process.run()
            process.waitUntilExit()
            if process.terminationStatus != 0 { throw ExitCode(process.terminationStatus) }
        }

        /// The prefix vmtoolsctl was installed under (`<prefix>/bin/vmtoolsctl`).
        static func installPrefix() -> String {
            let executable = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
            let fromPath = ProcessInfo.processInfo.environment["PATH"]?.split(separator: ":").map { "\($0)/vmtoolsctl" }
                .first { FileManager.default.isExecutableFile(atPath: $0) }
            let binary = CommandLine.arguments[0].contains("/") ? executable.path : (fromPath ?? executable.path)
            return URL(fileURLWithPath: binary).resolvingSymlinksInPath().deletingLastPathComponent()
                .deletingLastPathComponent().path
        }
    }
}
