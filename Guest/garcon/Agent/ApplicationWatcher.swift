import DesktopEntries
import EventLoop

#if canImport(Glibc)
    import Glibc
#endif

/// Watches the applications folders with inotify and says when their desktop files may have
/// changed, once per burst of events (a package install writes many files).
public final class ApplicationWatcher: Sendable {
    let dataDirectories: [String]
    /// Events closer together than this count as one change.
    static let settleMilliseconds: Int32 = 500

    public init(dataDirectories: [String]) {
        self.dataDirectories = dataDirectories
    }

    /// Calls `onChange` on a thread of its own after each burst of changes, for good.
    public func start(onChange: @escaping @Sendable () -> Void) throws {
        let inotify = inotify_init1(Int32(IN_CLOEXEC))
        guard inotify >= 0 else { throw WatcherError(errno: errno) }
        watchAll(inotify)
        try HostThread.detached(name: "app-watcher") { [self] in
            var buffer = [UInt8](repeating: 0, count: 16384)
            while true {
                guard drain(inotify, &buffer, timeout: -1) else { continue }
                // Let the burst settle, then look again: new folders get watches too.
                while drain(inotify, &buffer, timeout: Self.settleMilliseconds) {}
                watchAll(inotify)
                onChange()
            }
        }
    }

    /// Waits up to `timeout` ms for events and reads them; whether there were any.
    private func drain(_ inotify: Int32, _ buffer: inout [UInt8], timeout: Int32) -> Bool {
        var ready = pollfd(fd: inotify, events: Int16(POLLIN), revents: 0)
        guard poll(&ready, 1, timeout) > 0 else { return false }
        return buffer.withUnsafeMutableBytes { read(inotify, $0.baseAddress, $0.count) } > 0
    }

    /// Watches every data directory (for an `applications` folder that appears) and every
    /// folder under each `applications` folder. Adding a watch that exists is harmless.
    private func watchAll(_ inotify: Int32) {
        let changes = UInt32(IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_CLOSE_WRITE | IN_ATTRIB)
        for directory in dataDirectories {
            _ = inotify_add_watch(inotify, directory, UInt32(IN_CREATE | IN_MOVED_TO))
            var folders = ["\(directory)/applications"]
            var depth = 0
            while !folders.isEmpty, depth <= ApplicationIndex.maxDepth {
                var next: [String] = []
                for folder in folders where inotify_add_watch(inotify, folder, changes) >= 0 {
                    next += FileSystem.list(folder).filter(\.isDirectory).map { "\(folder)/\($0.name)" }
                }
                folders = next
                depth += 1
            }
        }
    }
}

struct WatcherError: Error, CustomStringConvertible {
    let errno: Int32
    var description: String { "inotify: \(String(cString: strerror(errno)))" }
}
