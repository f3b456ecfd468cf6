import Foundation

/// What StartVm asks for. Either an image (a folder under the images directory, with `vmlinux`
/// or `vmlinuz`, and `initrd.img`), or an explicit kernel and initrd.
public struct VMOptions: Sendable, Equatable {
    public var name: String
    public var image = "default"
    public var kernel: String?
    public var initrd: String?
    /// Read-only disks first (/dev/vda, ...), then writable ones.
    public var disks: [String] = []
    public var writableDisks: [String] = []
    public var cpus = 2
    public var memoryMiB = 1024
    /// Extra kernel command-line words.
    public var params = ""
    /// The uid of who asked for the VM: the server of its shared folder serves as them.
    public var owner: UInt32 = 0
    /// The guest's root disk (`maitred.root=`), e.g. `/dev/vda`; the initramfs when nil.
    public var root: String?
    /// Overrides ``ConciergeConfiguration/startTimeoutSeconds``.
    public var timeoutSeconds: Double?
    /// Sockets joined between guest and host by mojo-proxy (none: no proxy).
    public var mojoChannels: [MojoChannel] = []

    public init(name: String) { self.name = name }

    /// VM names become folder, socket and interface-adjacent names: keep them tame.
    public static func validName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 32 && name.first != "-"
            && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }
    }

    /// The options with disk image names (`vmtoolsctl disk create NAME`) made paths under
    /// `disksDirectory`; paths stay as they are.
    func resolvingDiskNames(disksDirectory: String) -> VMOptions {
        var resolved = self
        func path(_ disk: String) -> String {
            disk.hasPrefix("/") || !Self.validName(disk) ? disk : "\(disksDirectory)/\(disk).img"
        }
        resolved.disks = disks.map(path)
        resolved.writableDisks = writableDisks.map(path)
        return resolved
    }

    /// The kernel and initrd to boot, checked to exist and be readable.
    func bootFiles(imagesDirectory: String) throws(ConciergeError) -> (kernel: String, initrd: String) {
        let kernel: String
        let initrd: String
        if let explicit = self.kernel {
            kernel = explicit
            initrd = self.initrd ?? ""
        } else {
            guard Self.validName(image) else { throw .invalid("image name '\(image)' is not a plain name") }
            let folder = "\(imagesDirectory)/\(image)"
            guard FileManager.default.fileExists(atPath: folder) else {
                throw .init(
                    .notFound, "no image '\(image)' in \(imagesDirectory) (vmtoolsctl image build --name \(image))")
            }
            // The ELF boots through PVH, seconds faster than the bzImage.
            let vmlinux = "\(folder)/vmlinux"
            kernel = FileManager.default.isReadableFile(atPath: vmlinux) ? vmlinux : "\(folder)/vmlinuz"
            initrd = self.initrd ?? "\(folder)/initrd.img"
        }
        for (what, path) in [("kernel", kernel), ("initrd", initrd)] where !(what == "initrd" && path.isEmpty) {
            guard path.hasPrefix("/") else { throw .invalid("the \(what) path '\(path)' must be absolute") }
            guard FileManager.default.isReadableFile(atPath: path) else {
                throw .init(.notFound, "the \(what) \(path) does not exist or is not readable")
            }
        }
        return (kernel, initrd)
    }

    /// Checks what can be checked before anything is allocated.
    func validate() throws(ConciergeError) {
        guard Self.validName(name) else {
            throw .invalid("VM name '\(name)' must be 1–32 letters, digits, '-' or '_', not starting with '-'")
        }
        guard (1...32).contains(cpus) else { throw .invalid("cpus \(cpus) is outside 1–32") }
        guard (64...(1 << 20)).contains(memoryMiB) else {
            throw .invalid("memory_mib \(memoryMiB) is outside 64–1048576")
        }
        for disk in disks + writableDisks {
            guard disk.hasPrefix("/") else {
                throw .invalid("the disk '\(disk)' is neither a disk image name nor an absolute path")
            }
            guard FileManager.default.fileExists(atPath: disk) else {
                throw .init(.notFound, "the disk \(disk) does not exist")
            }
        }
        guard !params.contains("\n") else { throw .invalid("params must be one line") }
        if let timeoutSeconds, !(1...3600).contains(timeoutSeconds) {
            throw .invalid("timeout \(timeoutSeconds) s is outside 1–3600")
        }
        try MojoChannel.validate(mojoChannels)
    }
}
