import GuestMemory

// MARK: - PVH boot of an ELF vmlinux

extension LinuxLoader {
    /// The PVH path: the vmlinux's `PT_LOAD` segments at their physical addresses, the command
    /// line at ``commandLineAddress``, the initrd as module 0, and the start info at
    /// ``pvhStartInfoAddress`` with the memory map built from `e820`.
    ///
    /// Everything that can be checked (the ELF, the command line, the memory map, where the
    /// segments and the initrd go) is checked before guest memory is written.
    func loadPVH(
        kernel: some ImageSource, initrd: (any ImageSource)?, commandLine: String, e820: [E820Entry],
        into memory: GuestMemory
    ) throws -> Entry {
        let elf = try ElfKernel(from: kernel)
        let commandLineBytes = Array(commandLine.utf8)
        try Self.checkCommandLine(commandLineBytes, limit: Self.pvhCommandLineMax)
        guard !e820.isEmpty else {
            throw LoaderError.unsupported("PVH boot needs a memory map, and the e820 list is empty")
        }
        try Self.checkE820Count(e820)
        var initrdPlacement: (address: UInt64, size: UInt64)?
        if let initrd, initrd.byteCount > 0 {
            let size = UInt64(initrd.byteCount)
            let address = try Self.initrdAddress(
                size: size, kernelEnd: elf.end, maxAddress: Self.pvhInitrdAddressMax, memory: memory)
            initrdPlacement = (address, size)
        }

        try elf.load(from: kernel, into: memory)
        try memory.write(commandLineBytes + [0], at: Self.commandLineAddress)
        var startInfo = PVHStartInfo(
            commandLineAddress: Self.commandLineAddress, rsdpAddress: ACPITables.rsdpAddress,
            memoryMapAddress: Self.pvhMemoryMapAddress, memoryMapEntries: UInt32(e820.count))
        if let initrd, let (address, size) = initrdPlacement {
            try initrd.read(into: memory.buffer(at: address, count: initrd.byteCount), at: 0)
            try memory.write(PVHModule(address: address, size: size).bytes, at: Self.pvhModuleListAddress)
            startInfo.moduleCount = 1
            startInfo.moduleListAddress = Self.pvhModuleListAddress
        }
        try memory.write(e820.flatMap { PVHMemoryMapEntry($0).bytes }, at: Self.pvhMemoryMapAddress)
        try memory.write(startInfo.bytes, at: Self.pvhStartInfoAddress)
        return Entry(
            boot: .pvh(entry: elf.pvhEntry, startInfo: UInt32(Self.pvhStartInfoAddress)), kernelStart: elf.start,
            kernelEnd: elf.end, initrd: initrdPlacement)
    }
}
