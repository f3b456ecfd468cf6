// garcon: the agent in a vmtools container (maitred starts it as the container's first process).
//
//   garcon [--listen ADDRESS] [--host ADDRESS|none] [--token-file PATH]
//                                 serve Garcon, tell the host (vsock:2:8889) the container is ready
//   garcon open-url URL           ask the host to open URL (as xdg-open would)
import DesktopEntries
import GarconAgent
import GuestTransport

#if canImport(Glibc)
    import Glibc
#endif

// Before any thread exists, so that every thread inherits it.
GarconAgent.blockTerminationSignal()
var options = GarconAgent.Options()
var arguments = CommandLine.arguments.dropFirst()
func usage(_ message: String) -> Never {
    GarconLog.error(
        "\(message)\nusage: garcon [--listen ADDRESS] [--host ADDRESS|none] [--token-file PATH]\n"
            + "       garcon open-url URL")
    exit(64)
}

if arguments.first == "open-url" {
    guard arguments.count == 2, let url = arguments.last, !url.isEmpty else { usage("open-url takes one URL") }
    do {
        try await GarconAgent.openURL(
            url, host: options.host ?? .vsock(cid: 2, port: 8889), tokenPath: options.tokenPath)
        exit(0)
    } catch {
        GarconLog.error("\(error)")
        exit(1)
    }
}

while let flag = arguments.popFirst() {
    guard let value = arguments.popFirst() else { usage("\(flag) needs a value") }
    switch flag {
    case "--token-file": options.tokenPath = value
    case "--host" where value == "none": options.host = nil
    case "--listen", "--host":
        guard let address = AgentAddress(value) else {
            usage("\(value) is not vsock:PORT, vsock:CID:PORT or unix:PATH")
        }
        if flag == "--listen" { options.listen = address } else { options.host = address }
    default: usage("unknown option \(flag)")
    }
}

var environment: [String: String] = [:]
var entry = environ
while let pointer = entry.pointee {
    let text = String(cString: pointer)
    if let equals = text.firstIndex(of: "=") {
        environment[String(text[..<equals])] = String(text[text.index(after: equals)...])
    }
    entry += 1
}
options.dataDirectories = ApplicationIndex.dataDirectories(environment: environment)

do {
    try ChildReaper.start()
    try await GarconAgent(options: options, environment: environment).run()
    GarconLog.info("stopped")
} catch {
    GarconLog.error("\(error)")
    exit(1)
}
