#if canImport(Glibc)
    import Glibc
#endif

// What every fuzz target shares: the libFuzzer driver call and the replayer that a plain build
// runs over saved inputs (so corpus entries that once failed stay as regression tests).

/// One fuzz input handler, as libFuzzer calls it.
public typealias FuzzInputHandler = @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32

#if FUZZING
    @_silgen_name("LLVMFuzzerRunDriver")
    func LLVMFuzzerRunDriver(
        _ argc: UnsafeMutablePointer<Int32>,
        _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
        _ callback: FuzzInputHandler
    ) -> Int32

    /// Runs libFuzzer's driver with the process arguments and `handler`.
    public func runLibFuzzer(
        _ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?, _ handler: FuzzInputHandler
    ) -> Int32 {
        var argc = argc
        var argv = argv
        return LLVMFuzzerRunDriver(&argc, &argv, handler)
    }
#endif

/// Feeds each file named in `arguments` (after the program name) to `body`; exits 2 on a file
/// it cannot read.
public func replayInputs(name: String, arguments: [String], _ body: (UnsafeRawBufferPointer) -> Int32) {
    var count = 0
    for path in arguments.dropFirst() {
        guard let file = fopen(path, "rb") else {
            print("\(name): cannot open \(path)")
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
        _ = bytes.withUnsafeBytes { body($0) }
        count += 1
    }
    print("\(name): replayed \(count) inputs")
}
