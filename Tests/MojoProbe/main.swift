// mojo-probe: both ends of a Unix-socket service for testing and measuring mojo-proxy through
// a real VM (Tests/integration/mojo-proxy.sh, tools/bench-mojo). A test tool, not shipped.
// Glibc only (no Foundation), so that the same binary runs in the guest's initramfs.
//
//   mojo-probe serve PATH                 the host's service: a process per connection, whose
//                                         first byte says what it does (see Mode)
//   mojo-probe check PATH                 the guest's client: every check, one "ok"/"FAIL" line each
//   mojo-probe refused PATH               exits 0 when a connection to PATH is ended by the other side
//   mojo-probe bench PATH [MIB] [ROUNDS]  throughput (MiB/s) and round trip (µs) of a connection
//                                         (PATH vsock:PORT: to the host over plain vsock, from a guest)
import CGuestSystem
import CLinux
import EventLoop

#if canImport(Glibc)
    import Glibc
#endif

// MARK: - Plumbing

func fail(_ message: String) -> Never {
    let line = "mojo-probe: \(message)\n"
    _ = line.withCString { write(2, $0, strlen($0)) }
    exit(2)
}

func say(_ line: String) {
    let text = line + "\n"
    _ = text.withCString { write(1, $0, strlen($0)) }
}

/// A Unix socket's path, or `vsock:PORT` for the host (CID 2) over plain vsock from a guest.
func connectTo(_ path: String) -> Int32 {
    let fd: Int32
    if path.hasPrefix("vsock:"), let port = UInt32(path.dropFirst(6)) {
        fd = cgs_vsock_connect(2, port)
        guard fd >= 0 else { fail("connecting to \(path): \(String(cString: strerror(-fd)))") }
    } else {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard let address = UnixAddress(path), address.withSockaddr({ connect(fd, $0, $1) }) == 0 else {
            fail("connecting to \(path): \(String(cString: strerror(errno)))")
        }
    }
    var timeout = timeval(tv_sec: 30, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    return fd
}

func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
    var done = 0
    while done < bytes.count {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + done, bytes.count - done) }
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else { return false }
        done += n
    }
    return true
}

func writeAll(_ fd: Int32, _ text: String) -> Bool { writeAll(fd, Array(text.utf8)) }

/// Exactly `count` bytes, or fewer at end of stream (or error).
func readExactly(_ fd: Int32, _ count: Int) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: count)
    var done = 0
    while done < count {
        let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + done, count - done) }
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else { break }
        done += n
    }
    return Array(bytes.prefix(done))
}

func readToEnd(_ fd: Int32) -> String {
    var result: [UInt8] = []
    while true {
        let chunk = readExactly(fd, 4096)
        result += chunk
        if chunk.count < 4096 { break }
    }
    return String(decoding: result, as: UTF8.self)
}

/// One byte with `fds` attached (SCM_RIGHTS).
func sendFDs(_ socket: Int32, _ byte: UInt8, _ fds: [Int32]) -> Bool {
    [byte].withUnsafeBytes { bytes in
        fds.withUnsafeBufferPointer {
            clinux_send_with_fds(socket, bytes.baseAddress, 1, $0.baseAddress, Int32($0.count))
        }
    } == 1
}

/// One byte and the descriptors that came with it; nil at end of stream or after 30 s.
func receiveFDs(_ socket: Int32) -> (byte: UInt8, fds: [Int32])? {
    var entry = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
    guard poll(&entry, 1, 30_000) == 1 else { return nil }
    var byte: [UInt8] = [0]
    var fds = [Int32](repeating: -1, count: 8)
    var count: Int32 = 0
    var truncated: Int32 = 0
    let n = byte.withUnsafeMutableBytes { bytes in
        fds.withUnsafeMutableBufferPointer {
            clinux_recv_with_fds(socket, bytes.baseAddress, 1, $0.baseAddress, 8, &count, &truncated)
        }
    }
    guard n == 1 else { return nil }
    return (byte[0], Array(fds.prefix(Int(count))))
}

func pread(_ fd: Int32, _ count: Int, at offset: Int) -> String {
    var bytes = [UInt8](repeating: 0, count: count)
    let n = bytes.withUnsafeMutableBytes { Glibc.pread(fd, $0.baseAddress, count, off_t(offset)) }
    return n > 0 ? String(decoding: bytes.prefix(n), as: UTF8.self) : ""
}

func pwrite(_ fd: Int32, _ text: String, at offset: Int) -> Bool {
    let bytes = Array(text.utf8)
    return bytes.withUnsafeBytes { Glibc.pwrite(fd, $0.baseAddress, bytes.count, off_t(offset)) } == bytes.count
}

func fileSize(_ fd: Int32) -> Int {
    var info = stat()
    return fstat(fd, &info) == 0 ? Int(info.st_size) : -1
}

func isRegularFile(_ fd: Int32) -> Bool {
    var info = stat()
    return fstat(fd, &info) == 0 && info.st_mode & S_IFMT == S_IFREG
}

/// An unlinked temporary file holding `text`, opened read-write.
func temporaryFile(_ text: String) -> Int32 {
    var template = Array("/tmp/mojo-probe-XXXXXX".utf8CString)
    let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
    guard fd >= 0 else { fail("mkstemp: \(String(cString: strerror(errno)))") }
    template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
    guard pwrite(fd, text, at: 0) else { fail("writing a temporary file") }
    return fd
}

func nowNanoseconds() -> UInt64 {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
}

// MARK: - The service (host side)

/// What a connection does, by its first byte.
enum Mode: UInt8 {
    /// Echo everything until end of stream.
    case echo = 0x65  // e
    /// Read until end of stream, then answer the count (8 bytes, little-endian).
    case sink = 0x73  // s
    /// A pipe's write end comes along: write a line into it, close it, answer "k".
    case pipe = 0x70  // p
    /// A regular file comes along: answer what it holds, after appending "+host" to it.
    case file = 0x66  // f
    /// Send a regular file and a socket: write a line on the socket, read the client's line
    /// back, then answer "<the file's content>|<that line>".
    case give = 0x67  // g
}

func serve(_ connection: Int32) {
    guard let first = receiveFDs(connection), let mode = Mode(rawValue: first.byte) else { return }
    switch mode {
    case .echo:
        while true {
            var buffer = [UInt8](repeating: 0, count: 256 << 10)
            let n = buffer.withUnsafeMutableBytes { read(connection, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0, writeAll(connection, Array(buffer.prefix(n))) else { return }
        }
    case .sink:
        var total: UInt64 = 0
        var buffer = [UInt8](repeating: 0, count: 256 << 10)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(connection, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            total += UInt64(n)
        }
        _ = writeAll(connection, (0..<8).map { UInt8(truncatingIfNeeded: total >> (8 * $0)) })
    case .pipe:
        guard let fd = first.fds.first else { return }
        _ = writeAll(fd, "through a pipe\n")
        close(fd)
        _ = writeAll(connection, "k")
    case .file:
        guard let fd = first.fds.first, isRegularFile(fd) else { return }
        let size = fileSize(fd)
        let content = pread(fd, size, at: 0)
        _ = pwrite(fd, "+host", at: size)
        close(fd)
        _ = writeAll(connection, content)
    case .give:
        let file = temporaryFile("from the host's file")
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0,
            sendFDs(connection, 0x67, [file, pair[1]])
        else { return }
        close(pair[1])
        _ = writeAll(pair[0], "through a socketpair\n")
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(pair[0], SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let line = readToEnd(pair[0])
        _ = writeAll(connection, pread(file, fileSize(file), at: 0) + "|" + line)
    }
}

func runServer(_ path: String) -> Never {
    signal(SIGPIPE, SIG_IGN)
    signal(SIGCHLD, SIG_IGN)  // children are reaped by the kernel
    unlink(path)
    let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard let address = UnixAddress(path), address.withSockaddr({ bind(listener, $0, $1) }) == 0,
        listen(listener, 128) == 0
    else { fail("listening at \(path): \(String(cString: strerror(errno)))") }
    chmod(path, 0o666)
    say("mojo-probe: serving on \(path)")
    while true {
        let connection = accept4(listener, nil, nil, Int32(SOCK_CLOEXEC.rawValue))
        guard connection >= 0 else { continue }
        // A process per connection: simple, and what one connection does cannot stall another.
        if fork() == 0 {
            close(listener)
            serve(connection)
            _exit(0)
        }
        close(connection)
    }
}

// MARK: - The checks (guest side)

/// Runs one check; returns 1 when it failed.
func check(_ name: String, _ body: () -> String?) -> Int {
    if let problem = body() {
        say("FAIL - \(name): \(problem)")
        return 1
    }
    say("ok   - \(name)")
    return 0
}

func runChecks(_ path: String) -> Never {
    signal(SIGPIPE, SIG_IGN)
    var failures = 0
    failures += check("bytes cross both ways (1 MiB echoed in 64 KiB pieces)") {
        let fd = connectTo(path)
        defer { close(fd) }
        guard writeAll(fd, [Mode.echo.rawValue]) else { return "write" }
        for piece in 0..<16 {
            let bytes = (0..<(64 << 10)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ piece) }
            guard writeAll(fd, bytes) else { return "write of piece \(piece)" }
            guard readExactly(fd, bytes.count) == bytes else { return "piece \(piece) came back different" }
        }
        return nil
    }
    failures += check("closing the client's end reaches the service, whose close comes back") {
        let fd = connectTo(path)
        defer { close(fd) }
        guard writeAll(fd, [Mode.sink.rawValue]) && writeAll(fd, "12345") else { return "write" }
        shutdown(fd, Int32(SHUT_WR))
        let count = readExactly(fd, 8)
        guard count.count == 8, count[0] == 5 else { return "the service counted \(count)" }
        return readExactly(fd, 1).isEmpty ? nil : "more than the count came"
    }
    failures += check("a pipe's write end passed to the host writes into the guest's pipe") {
        let fd = connectTo(path)
        defer { close(fd) }
        var ends: [Int32] = [-1, -1]
        guard pipe2(&ends, O_CLOEXEC) == 0, sendFDs(fd, Mode.pipe.rawValue, [ends[1]]) else { return "sending a pipe" }
        close(ends[1])
        let line = readToEnd(ends[0])
        close(ends[0])
        guard line == "through a pipe\n" else { return "the pipe gave '\(line)'" }
        return readExactly(fd, 1) == [0x6B] ? nil : "no answer"
    }
    failures += check("a regular file passed to the host is read and written there (pread, pwrite)") {
        let fd = connectTo(path)
        defer { close(fd) }
        let file = temporaryFile("from the guest")
        defer { close(file) }
        guard sendFDs(fd, Mode.file.rawValue, [file]) else { return "sending a file" }
        let seen = readToEnd(fd)
        guard seen == "from the guest" else { return "the host read '\(seen)'" }
        let now = pread(file, 64, at: 0)
        return now == "from the guest+host" ? nil : "the file holds '\(now)'"
    }
    failures += check("a regular file and a socket passed by the host work in the guest") {
        let fd = connectTo(path)
        defer { close(fd) }
        guard writeAll(fd, [Mode.give.rawValue]), let received = receiveFDs(fd), received.fds.count == 2 else {
            return "no descriptors came"
        }
        let (file, socket) = (received.fds[0], received.fds[1])
        defer { close(file) }
        guard isRegularFile(file) else { return "the first descriptor is not a regular file" }
        let content = pread(file, 64, at: 0)
        guard content == "from the host's file", fileSize(file) == content.utf8.count else {
            return "the file holds '\(content)' (size \(fileSize(file)))"
        }
        guard pwrite(file, "+guest", at: content.utf8.count) else { return "pwrite" }
        _ = fcntl(socket, F_SETFL, fcntl(socket, F_GETFL) & ~O_NONBLOCK)
        let line = Array(readExactly(socket, 21))
        guard String(decoding: line, as: UTF8.self) == "through a socketpair\n" else {
            return "the socket gave \(line)"
        }
        guard writeAll(socket, "thanks") else { return "writing on the socket" }
        close(socket)
        let answer = readToEnd(fd)
        return answer == "from the host's file+guest|thanks" ? nil : "the host answered '\(answer)'"
    }
    failures += check("20 connections at once each get their own echo") {
        let fds = (0..<20).map { _ in connectTo(path) }
        defer { fds.forEach { close($0) } }
        for (i, fd) in fds.enumerated() {
            guard writeAll(fd, [Mode.echo.rawValue]) && writeAll(fd, "connection \(i)\n") else { return "write \(i)" }
        }
        for (i, fd) in fds.enumerated() {
            let expected = Array("connection \(i)\n".utf8)
            guard readExactly(fd, expected.count) == expected else { return "connection \(i) got another's bytes" }
        }
        return nil
    }
    say("\(failures == 0 ? "all checks passed" : "\(failures) checks failed")")
    exit(failures == 0 ? 0 : 1)
}

/// A connection the other side must end (a channel whose host socket refuses).
func runRefused(_ path: String) -> Never {
    let fd = connectTo(path)
    _ = writeAll(fd, [Mode.echo.rawValue])
    var byte: UInt8 = 0
    let n = read(fd, &byte, 1)
    guard n <= 0, !(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) else {
        fail(n > 0 ? "the connection carried data" : "the connection was not ended within 30 s")
    }
    say("the connection to \(path) was ended by the other side")
    exit(0)
}

// MARK: - The benchmark

func runBench(_ path: String, mebibytes: Int, rounds: Int) -> Never {
    signal(SIGPIPE, SIG_IGN)
    let sink = connectTo(path)
    let chunk = [UInt8](repeating: 0x5A, count: 256 << 10)
    guard writeAll(sink, [Mode.sink.rawValue]) else { fail("write") }
    let start = nowNanoseconds()
    for _ in 0..<(mebibytes * 4) where !writeAll(sink, chunk) { fail("write") }
    shutdown(sink, Int32(SHUT_WR))
    let count = readExactly(sink, 8)
    let seconds = Double(nowNanoseconds() - start) / 1e9
    let total =
        count.count == 8 ? count.enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * $1.offset) } : 0
    guard total == UInt64(mebibytes) << 20 else { fail("the service counted \(total) bytes") }
    close(sink)

    let echo = connectTo(path)
    guard writeAll(echo, [Mode.echo.rawValue]) else { fail("write") }
    var times: [UInt64] = []
    for _ in 0..<rounds {
        let sent = nowNanoseconds()
        guard writeAll(echo, [0x2A]), readExactly(echo, 1) == [0x2A] else { fail("round trip") }
        times.append(nowNanoseconds() - sent)
    }
    close(echo)
    times.sort()
    let median = Double(times[times.count / 2]) / 1000
    let p99 = Double(times[min(times.count - 1, times.count * 99 / 100)]) / 1000
    let throughput = Double(mebibytes) / seconds
    say(
        "throughput_mib_s=\(Int(throughput.rounded())) rtt_median_us=\(Int(median.rounded())) rtt_p99_us=\(Int(p99.rounded()))"
    )
    exit(0)
}

// MARK: - Main

let arguments = Array(CommandLine.arguments.dropFirst())
let usage = "usage: mojo-probe serve|check|refused PATH, or mojo-probe bench PATH [MIB] [ROUNDS]"
guard arguments.count >= 2 else { fail(usage) }
switch arguments[0] {
case "serve": runServer(arguments[1])
case "check": runChecks(arguments[1])
case "refused": runRefused(arguments[1])
case "bench":
    let mebibytes = arguments.count > 2 ? Int(arguments[2]) ?? 256 : 256
    let rounds = arguments.count > 3 ? Int(arguments[3]) ?? 2000 : 2000
    guard mebibytes > 0, rounds > 0 else { fail(usage) }
    runBench(arguments[1], mebibytes: mebibytes, rounds: rounds)
default: fail(usage)
}
