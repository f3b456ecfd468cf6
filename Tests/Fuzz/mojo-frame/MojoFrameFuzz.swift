import FuzzSupport
import MojoProxy

// Fuzz target for mojo-proxy's message decoder: the input is what the other proxy (a guest, for
// the host's proxy) controls, the byte stream of the link. It is decoded whole as one message
// body, and fed in pieces to a frame reader; every message that decodes must encode and decode
// again to the same message. Any crash, hang or leak is a bug.
//
// Built with `tools/fuzz` (libFuzzer, -DFUZZING); built normally it replays the files named on
// its command line.

func fuzzOne(_ input: UnsafeRawBufferPointer) -> Int32 {
    let bytes = Array(input)
    if let message = try? MojoFrame.decode(bytes) { roundTrip(message) }
    var reader = MojoFrameReader()
    // Pieces of varying size, as reads from a socket return them.
    var offset = 0
    var piece = 1
    while offset < bytes.count {
        let end = min(bytes.count, offset + piece)
        reader.append(bytes[offset..<end])
        offset = end
        piece = piece % 7 + 1
        do {
            while let message = try reader.next() { roundTrip(message) }
        } catch {
            return 0  // The link would be closed here.
        }
    }
    return 0
}

func roundTrip(_ message: Vmtools_Mojo_Message) {
    guard let frame = try? MojoFrame.encode(message) else { fatalError("a decoded message does not encode") }
    guard let again = try? MojoFrame.decode(frame.dropFirst(4)), again == message else {
        fatalError("a decoded message does not survive encode and decode")
    }
}

#if FUZZING
    @_cdecl("LLVMFuzzerTestOneInput")
    public func LLVMFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
        fuzzOne(UnsafeRawBufferPointer(start: data, count: size))
    }

    // SwiftPM names an executable's entry point after its module; libFuzzer's driver runs from it.
    @_cdecl("fuzz_mojo_frame_main")
    func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
        runLibFuzzer(argc, argv) { LLVMFuzzerTestOneInput($0, $1) }
    }
#else
    @main
    struct Replay {
        static func main() {
            replayInputs(name: "fuzz-mojo-frame", arguments: CommandLine.arguments, fuzzOne)
        }
    }
#endif
