import DesktopEntries
import FuzzSupport

// Fuzz target for garcon's desktop-entry reader: the input is a desktop file, which any program
// in the container can install. It is parsed as an entry, its Exec line is expanded with a few
// files and URLs, and its localized names looked up; errors are fine, a crash or a hang is a bug.
//
// Built with `tools/fuzz` (libFuzzer, -DFUZZING); built normally it replays the files named on
// its command line.

func fuzzOne(_ input: UnsafeRawBufferPointer) -> Int32 {
    let text = String(decoding: input, as: UTF8.self)
    guard let entry = try? DesktopEntry(parsing: text, id: "fuzz.desktop", path: "/fuzz.desktop") else { return 0 }
    _ = entry.name(for: "de_DE.UTF-8@euro")
    if let lines = try? entry.commandLines(opening: ["/a b", "file:///c%20d", "https://e/f", "file://x/y"]) {
        guard !lines.isEmpty, lines.allSatisfy({ !($0.first ?? "").isEmpty }) else {
            fatalError("an expanded Exec line without a program")
        }
    }
    return 0
}

#if FUZZING
    @_cdecl("LLVMFuzzerTestOneInput")
    public func LLVMFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
        fuzzOne(UnsafeRawBufferPointer(start: data, count: size))
    }

    // SwiftPM names an executable's entry point after its module; libFuzzer's driver runs from it.
    @_cdecl("fuzz_desktop_entry_main")
    func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
        runLibFuzzer(argc, argv) { LLVMFuzzerTestOneInput($0, $1) }
    }
#else
    @main
    struct Replay {
        static func main() {
            replayInputs(name: "fuzz-desktop-entry", arguments: CommandLine.arguments, fuzzOne)
        }
    }
#endif
