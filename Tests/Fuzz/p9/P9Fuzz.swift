import Foundation
import FuzzSupport
import P9

#if canImport(Glibc)
    import Glibc
#endif

// Fuzz target for the 9P server: the input is what a hostile guest controls, the byte stream of
// its 9P session. Each input is decoded as a request and as a reply (codec), then fed whole to a
// live server on a scratch export through a socketpair, after a Tversion and a Tattach of fid 0
// so that it reaches the file operations. The first byte picks a read-only or a writable export.
// Any crash, hang, leak or change outside the export is a bug.
//
// Built with `tools/fuzz` (libFuzzer, -DFUZZING); built normally it replays the files named on
// its command line, so corpus entries that once failed stay as regression tests.

/// base/share is exported; base/outside/secret must never change.
let base: String = {
    var template = Array("/tmp/vmtools-fuzz-p9-XXXXXX".utf8CString)
    guard let made = mkdtemp(&template) else { fatalError("cannot make the fuzz export: \(errno)") }
    return String(cString: made)
}()
let share = base + "/share"
let secret = base + "/outside/secret"
let secretText = Array("outside\n".utf8)

func resetShare() {
    try? FileManager.default.removeItem(atPath: share)
    do {
        try FileManager.default.createDirectory(atPath: share + "/dir/sub", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: base + "/outside", withIntermediateDirectories: true)
        try Data("hello".utf8).write(to: URL(fileURLWithPath: share + "/dir/file"))
        try Data(secretText).write(to: URL(fileURLWithPath: secret))
        try FileManager.default.createSymbolicLink(atPath: share + "/out", withDestinationPath: "../outside")
        try FileManager.default.createSymbolicLink(atPath: share + "/abs", withDestinationPath: secret)
    } catch {
        fatalError("cannot populate the fuzz export: \(error)")
    }
}

let servers: [P9Server] = {
    resetShare()
    do {
        return try [true, false].map {
            try P9Server(configuration: .init(root: share, readOnly: $0, maxMessageSize: 8192, maxInFlight: 2))
        }
    } catch {
        fatalError("cannot start the fuzz server: \(error)")
    }
}()
nonisolated(unsafe) var runs = 0

/// Runs one input; returns 0 as libFuzzer expects.
func fuzzOne(_ input: UnsafeRawBufferPointer) -> Int32 {
    let bytes = Array(input)
    _ = try? P9Request.decode(frame: bytes)
    _ = try? P9Response.decode(frame: bytes)
    guard let selector = bytes.first else { return 0 }

    runs += 1
    if runs % 1000 == 0 { resetShare() }
    var ends: [Int32] = [-1, -1]
    guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &ends) == 0 else { fatalError("socketpair: \(errno)") }
    let client = ends[0]
    let serverEnd = ends[1]
    let server = servers[Int(selector & 1)]
    let session = Thread {
        server.serve(fd: serverEnd)
        close(serverEnd)
    }
    session.start()
    // Write from another thread so that replies the server writes meanwhile never deadlock us.
    let stream =
        P9Request.version(msize: 8192, version: "9P2000.L").encode(tag: 0xFFFF)
        + P9Request.attach(fid: 0, afid: 0xFFFF_FFFF, uname: "", aname: "", uid: 0).encode(tag: 1)
        + Array(bytes.dropFirst())
    let writer = Thread {
        _ = p9WriteAll(client, stream)
        shutdown(client, Int32(SHUT_WR))
    }
    writer.start()
    var sink = [UInt8](repeating: 0, count: 65536)
    while sink.withUnsafeMutableBytes({ read(client, $0.baseAddress, $0.count) }) > 0 {}
    // The reply stream ends when the session thread closes its end, after serve(fd:) returned.
    while !session.isFinished || !writer.isFinished { usleep(100) }
    close(client)

    var st = stat()
    if lstat(secret, &st) != 0 || st.st_size != secretText.count
        || FileManager.default.contents(atPath: secret)
            != Data(secretText)
    {
        fatalError("the fuzz input changed \(secret), outside the export")
    }
    return 0
}

#if FUZZING
    @_cdecl("LLVMFuzzerTestOneInput")
    public func LLVMFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
        fuzzOne(UnsafeRawBufferPointer(start: data, count: size))
    }

    // SwiftPM names an executable's entry point after its module; libFuzzer's driver runs from it.
    @_cdecl("fuzz_p9_main")
    func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
        runLibFuzzer(argc, argv) { LLVMFuzzerTestOneInput($0, $1) }
    }
#else
    @main
    struct Replay {
        static func main() { replayInputs(name: "fuzz-p9", arguments: CommandLine.arguments, fuzzOne) }
    }
#endif
