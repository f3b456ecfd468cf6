// p9-serve: serves a folder over 9P2000.L on a Unix socket with Core/P9, one session per
// connection, for the Linux-client conformance test (Tests/integration/p9-linux.sh mounts it
// with trans=unix). A test tool, not shipped: seneschal is how users share folders.
//
//   p9-serve --socket PATH --root DIR [--read-only]
import Foundation
import P9

#if canImport(Glibc)
    import Glibc
#endif

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("p9-serve: \(message)\n".utf8))
    exit(2)
}

var socketPath: String?
var root: String?
var readOnly = false
var arguments = CommandLine.arguments.dropFirst()
while let argument = arguments.popFirst() {
    switch argument {
    case "--socket": socketPath = arguments.popFirst()
    case "--root": root = arguments.popFirst()
    case "--read-only": readOnly = true
    default: fail("unknown argument \(argument); usage: p9-serve --socket PATH --root DIR [--read-only]")
    }
}
guard let socketPath, let root else { fail("usage: p9-serve --socket PATH --root DIR [--read-only]") }

let server: P9Server
do { server = try P9Server(root: root, readOnly: readOnly) } catch { fail("\(error)") }

signal(SIGPIPE, SIG_IGN)
let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
guard listener >= 0 else { fail("socket: \(String(cString: strerror(errno)))") }
var address = sockaddr_un()
address.sun_family = sa_family_t(AF_UNIX)
let pathBytes = Array(socketPath.utf8)
guard pathBytes.count < MemoryLayout.size(ofValue: address.sun_path) else { fail("socket path too long") }
withUnsafeMutableBytes(of: &address.sun_path) { raw in
    raw.copyBytes(from: pathBytes)
    raw[pathBytes.count] = 0
}
unlink(socketPath)
let bound = withUnsafePointer(to: &address) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
    }
}
guard bound == 0, listen(listener, 16) == 0 else {
    fail("listening on \(socketPath): \(String(cString: strerror(errno)))")
}
FileHandle.standardError.write(Data("p9-serve: serving \(root)\(readOnly ? " read-only" : "") on \(socketPath)\n".utf8))

while true {
    let client = accept(listener, nil, nil)
    if client < 0 {
        if errno == EINTR { continue }
        fail("accept: \(String(cString: strerror(errno)))")
    }
    do {
        try server.serveInBackground(fd: client) { end in
            FileHandle.standardError.write(Data("p9-serve: session ended: \(end)\n".utf8))
        }
    } catch {
        close(client)
        FileHandle.standardError.write(Data("p9-serve: \(error)\n".utf8))
    }
}
