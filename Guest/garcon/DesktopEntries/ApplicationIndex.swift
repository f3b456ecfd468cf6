/// The applications installed in a system, found as the Desktop Entry Specification says: the
/// `applications` folder of every XDG data directory, most important first; a desktop file ID
/// found early hides the same ID further down (a `Hidden=true` entry hides it without being an
/// application itself).
public struct ApplicationIndex: Sendable {
    /// Folders searched, most important first; each holds an `applications` folder.
    public let dataDirectories: [String]

    /// Subfolders deeper than this are not searched (a symlink loop ends here).
    package static let maxDepth = 8

    public init(dataDirectories: [String]) {
        self.dataDirectories = dataDirectories
    }

    /// `$XDG_DATA_HOME` (default `~/.local/share`), then `$XDG_DATA_DIRS` (default
    /// `/usr/local/share:/usr/share`), as the XDG Base Directory Specification orders them.
    public static func dataDirectories(environment: [String: String]) -> [String] {
        var directories: [String] = []
        if let home = environment["XDG_DATA_HOME"], home.hasPrefix("/") {
            directories.append(home)
        } else if let home = environment["HOME"], home.hasPrefix("/") {
            directories.append("\(home)/.local/share")
        }
        let system = environment["XDG_DATA_DIRS"].flatMap { $0.isEmpty ? nil : $0 } ?? "/usr/local/share:/usr/share"
        directories += system.split(separator: ":").map(String.init).filter { $0.hasPrefix("/") }
        var seen: Set<String> = []
        return directories.filter { seen.insert($0).inserted }
    }

    /// What a scan found: the applications by desktop file ID, and the files that could not be
    /// read (path and why), which a scan skips rather than fails on.
    public struct Scan: Sendable {
        public var applications: [String: DesktopEntry] = [:]
        public var problems: [(path: String, why: String)] = []

        /// The applications in ID order.
        public var sorted: [DesktopEntry] { applications.values.sorted { $0.id < $1.id } }
    }

    /// Reads every desktop file the search path holds.
    public func scan() -> Scan {
        var result = Scan()
        var claimed: Set<String> = []
        for directory in dataDirectories {
            for (id, path) in Self.desktopFiles(in: "\(directory)/applications") where !claimed.contains(id) {
                claimed.insert(id)
                guard let bytes = FileSystem.read(path, limit: KeyFile.maxSize) else {
                    result.problems.append((path, "cannot be read, or is over \(KeyFile.maxSize) bytes"))
                    continue
                }
                guard let text = String(validating: bytes, as: UTF8.self) else {
                    result.problems.append((path, "is not UTF-8"))
                    continue
                }
                do {
                    let entry = try DesktopEntry(parsing: text, id: id, path: path)
                    // An Exec line that cannot be split would only fail at launch: left out now.
                    if let exec = entry.exec, !entry.isHidden { _ = try DesktopEntry.splitExec(exec) }
                    if !entry.isHidden { result.applications[id] = entry }
                } catch .notAnApplication {
                    continue  // links and folders are not applications, and are no problem
                } catch {
                    result.problems.append((path, error.description))
                }
            }
        }
        return result
    }

    /// Desktop files under `folder` as (desktop file ID, path): `a/b/c.desktop` is `a-b-c.desktop`.
    static func desktopFiles(in folder: String, prefix: String = "", depth: Int = 0) -> [(String, String)] {
        guard depth <= maxDepth else { return [] }
        var files: [(String, String)] = []
        for (name, isDirectory) in FileSystem.list(folder) {
            let path = "\(folder)/\(name)"
            if isDirectory {
                files += desktopFiles(in: path, prefix: "\(prefix)\(name)-", depth: depth + 1)
            } else if name.hasSuffix(".desktop"), FileSystem.isRegularFile(path) {
                files.append(("\(prefix)\(name)", path))
            }
        }
        return files
    }
}
