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

    @_silgen_name("LLVMFuzzerRunDriver")
    func LLVMFuzzerRunDriver(
        _ argc: UnsafeMutablePointer<Int32>,
        _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
        _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
    ) -> Int32

    // SwiftPM names an executable's entry point after its module; libFuzzer's driver runs from it.
    @_cdecl("fuzz_kernel_loader_main")
    func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
        var argc = argc
        var argv = argv
        return LLVMFuzzerRunDriver(&argc, &argv) { LLVMFuzzerTestOneInput($0, $1) }
    }
#else
    @main
    struct Replay {
        static func main() {
            var count = 0
            for path in CommandLine.arguments.dropFirst() {
                guard let file = fopen(path, "rb") else {
                    print("fuzz-kernel-loader: cannot open \(path)")
                    exit(2)
                }
                var bytes: [UInt8] = []
                var chunk = [UInt8](repeating: 0, count: 4096)
                while true {
                    let n = fread(&chunk, 1, chunk.count, file)
                    if n <= 0 { break }
                    bytes += chunk[0..<n]
                }
                fclose(file)
                _ = bytes.withUnsafeBytes { fuzzOne($0) }
                count += 1
            }
            print("fuzz-kernel-loader: replayed \(count) inputs")
        }
    }
#endif
