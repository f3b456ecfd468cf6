import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A JSON file holding state that must survive a restart (allocations, the VMs that run),
/// replaced atomically: written to a temporary file, synced, renamed over the old one, and the
/// folder synced, so a crash leaves either the old state or the new one, never half of each.
public struct StateFile<State: Codable & Sendable>: Sendable {
    public let path: String

    public init(path: String) { self.path = path }

    /// Why the state could not be read or written.
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// The saved state, or nil when there is none yet. A file that exists but does not parse is
    /// an error (naming the file), not an empty state: that could hand out what running VMs hold.
    public func load() throws(Failure) -> State? {
        guard let data = FileManager.default.contents(atPath: path) else {
            if access(path, F_OK) == 0 { throw Failure(description: "cannot read \(path)") }
            return nil
        }
        do {
            return try JSONDecoder().decode(State.self, from: data)
        } catch {
            throw Failure(description: "\(path) is not valid state (\(error)); move it aside to start afresh")
        }
    }

    public func save(_ state: State) throws(Failure) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data: Data
        do { data = try encoder.encode(state) } catch { throw Failure(description: "encoding state: \(error)") }
        let folder = (path as NSString).deletingLastPathComponent
        let temporary = "\(path).tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw Failure(description: "creating \(temporary): \(Self.errorText())") }
        let written = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd) == 0
        close(fd)
        guard written == data.count, synced else {
            unlink(temporary)
            throw Failure(description: "writing \(temporary): \(Self.errorText())")
        }
        guard rename(temporary, path) == 0 else {
            unlink(temporary)
            throw Failure(description: "replacing \(path): \(Self.errorText())")
        }
        let directory = open(folder.isEmpty ? "." : folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directory >= 0 {
            fsync(directory)
            close(directory)
        }
    }

    private static func errorText() -> String { String(cString: strerror(errno)) }
}
