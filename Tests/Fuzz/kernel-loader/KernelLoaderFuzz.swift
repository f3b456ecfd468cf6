import FuzzSupport
import GuestMemory
import X86

#if canImport(Glibc)
    import Glibc
#endif

// Fuzz target for the kernel loaders: the input is a kernel file (bzImage or ELF vmlinux) and
// everything in it is untrusted — header fields, program headers, note sizes, offsets. The
// loader must refuse bad files with a LoaderError and never touch memory outside guest RAM.
//
// Built with `tools/fuzz kernel-loader` (libFuzzer, -DFUZZING); built normally it replays the
// files named on its command line.

/// Guest RAM for every run: 64 MiB, the x86 layout the VMM uses.
let memory: GuestMemory = {
    do { return try GuestMemory(x86MiB: 64) } catch { fatalError("cannot map guest RAM: \(error)") }
}()
let e820 = LinuxLoader.e820Map(for: memory)
let initrd: [UInt8] = Array(repeating: 0x5A, count: 4096)

/// Runs one input; returns 0 as libFuzzer expects.
func fuzzOne(_ input: UnsafeRawBufferPointer) -> Int32 {
    let kernel = Array(input)
    // Whether it loads or is refused does not matter; crashing or escaping RAM does.
    _ = try? LinuxLoader().load(
        kernel: kernel, initrd: kernel.count % 2 == 0 ? initrd : nil, commandLine: "console=ttyS0",
        e820: e820, into: memory)
    return 0
}

#if FUZZING
    @_cdecl("LLVMFuzzerTestOneInput")
    public func LLVMFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
        fuzzOne(UnsafeRawBufferPointer(start: data, count: size))
    }

    // SwiftPM names an executable's entry point after its module; libFuzzer's driver runs from it.
    @_cdecl("fuzz_kernel_loader_main")
    func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
        runLibFuzzer(argc, argv) { LLVMFuzzerTestOneInput($0, $1) }
    }
#else
    @main
    struct Replay {
        static func main() { replayInputs(name: "fuzz-kernel-loader", arguments: CommandLine.arguments, fuzzOne) }
    }
#endif
