import CLinux
import DesktopEntries
import GuestTransport

#if canImport(Glibc)
    import Glibc
#endif

/// garcon's command line, shared by the `garcon` executable and maitred, which runs it when
/// started as `garcon` (the guest image links /usr/bin/garcon to maitred: one Swift runtime and
/// Foundation in the guest instead of two, 84 MB each):
///
///     garcon [--listen ADDRESS] [--host ADDRESS|none] [--token-file PATH]
///                                   serve Garcon, tell the host (vsock:2:8889) the container is ready
///     garcon open-url URL           ask the host to open URL (as xdg-open would)
public enum GarconCommand {
    /// Whether `argv0` names garcon (its last path component).
    public static func isInvokedAs(_ argv0: String?) -> Bool {
        argv0?.split(separator: "/").last == "garcon"
    }

    /// Runs garcon with `arguments` (argv without argv[0]). Call it from a synchronous main,
    /// before any thread exists: SIGTERM is blocked first, so that only garcon's own waiting
    /// thread takes it.
    public static func main(_ arguments: ArraySlice<String>) -> Never {
        GarconAgent.blockTerminationSignal()
        // Started as maitred's /proc/self/exe, its name would be maitred's file's ("init"):
        // process lists in the container should say garcon.
        clinux_set_thread_name("garcon")
        if arguments.first == "open-url" {
            guard arguments.count == 2, let url = arguments.last, !url.isEmpty else { usage("open-url takes one URL") }
            let defaults = GarconAgent.Options()
            Task.detached {
                do {
                    try await GarconAgent.openURL(
                        url, host: defaults.host ?? .vsock(cid: 2, port: 8889), tokenPath: defaults.tokenPath)
                    exit(0)
                } catch {
                    GarconLog.error("\(error)")
                    exit(1)
                }
            }
        } else {
            let environment = environment()
            var options = options(arguments)
            options.dataDirectories = ApplicationIndex.dataDirectories(environment: environment)
            Task.detached { [options] in
                do {
                    try ChildReaper.start()
                    try await GarconAgent(options: options, environment: environment).run()
                    GarconLog.info("stopped")
                    exit(0)
                } catch {
                    GarconLog.error("\(error)")
                    exit(1)
                }
            }
        }
        // The work runs in the detached task; this thread only waits, with SIGTERM still
        // blocked (dispatchMain would wait in sigsuspend with nothing blocked, and SIGTERM
        // would kill garcon here).
        while true { pause() }
    }

    static func usage(_ message: String) -> Never {
        GarconLog.error(
            "\(message)\nusage: garcon [--listen ADDRESS] [--host ADDRESS|none] [--token-file PATH]\n"
                + "       garcon open-url URL")
        exit(64)
    }

    static func environment() -> [String: String] {
        var environment: [String: String] = [:]
        var entry = environ
        while let pointer = entry.pointee {
            let text = String(cString: pointer)
            if let equals = text.firstIndex(of: "=") {
                environment[String(text[..<equals])] = String(text[text.index(after: equals)...])
            }
            entry += 1
        }
        return environment
    }

    static func options(_ arguments: ArraySlice<String>) -> GarconAgent.Options {
        var options = GarconAgent.Options()
        var arguments = arguments
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
        return options
    }
}
