// maitred: PID 1 of every vmtools guest, and its agent (gRPC on vsock 8888, shell on 9001).
//
//   maitred                       as init: set the system up, serve on vsock, call VmReady
//   maitred --listen unix:/a.sock --shell-listen unix:/b.sock [--ready unix:/c.sock]
//                                 by hand or in tests: serve on Unix sockets, no init duties
//   garcon ...                    started by that name (the image's /usr/bin/garcon): garcon
import GarconAgent
import GuestAgent
import GuestTransport

#if canImport(Glibc)
    import Glibc
#endif

// Started as garcon (/usr/bin/garcon links here): a container's agent, not init.
if GarconCommand.isInvokedAs(CommandLine.arguments.first) { GarconCommand.main(CommandLine.arguments.dropFirst()) }

let startedAt = ContinuousClock.now
let asInit = getpid() == 1
// Before any thread exists: the Swift runtime and glibc expect /proc.
if asInit { GuestInit.prepare() }

var options = MaitredAgent.Options()
var arguments = CommandLine.arguments.dropFirst()
func usage(_ message: String) -> Never {
    KernelLog.error("\(message)\nusage: maitred [--listen ADDRESS] [--shell-listen ADDRESS] [--ready ADDRESS|none]")
    if asInit { PowerOff.run(reason: "bad arguments") }
    exit(64)
}
while let flag = arguments.popFirst() {
    // The kernel hands init the command-line words it does not know; only ours have dashes.
    guard flag.hasPrefix("--") else { continue }
    guard let value = arguments.popFirst() else { usage("\(flag) needs a value") }
    if flag == "--ready" && value == "none" {
        options.ready = nil
        continue
    }
    guard let address = AgentAddress(value) else { usage("\(value) is not vsock:PORT, vsock:CID:PORT or unix:PATH") }
    switch flag {
    case "--listen": options.listen = address
    case "--shell-listen": options.shellListen = address
    case "--ready": options.ready = address
    default: usage("unknown option \(flag)")
    }
}

do {
    let reaper = try ProcessReaper(scope: asInit ? .everyChild : .ownChildren)
    try await MaitredAgent(options: options, reaper: reaper, asInit: asInit).run(startedAt: startedAt)
    KernelLog.info("stopped")
} catch {
    KernelLog.error("\(error)")
    if asInit { PowerOff.run(reason: "maitred failed") }
    exit(1)
}
if asInit { PowerOff.run(reason: "maitred's servers ended") }
