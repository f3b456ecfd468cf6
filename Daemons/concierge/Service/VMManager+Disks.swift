import Foundation

#if canImport(Glibc)
    import Glibc
#endif

// MARK: - Disks in use

extension VMManager {
    /// The VM that was given disk file `path` (read-only or writable), if one runs; a VM still
    /// starting is included.
    public func vmUsing(disk path: String) -> String? {
        let canonical = Self.canonicalPath(path)
        for (name, record) in state.vms
        where ((record.disks ?? []) + (record.writableDisks ?? [])).contains(where: {
            Self.canonicalPath($0) == canonical
        }) {
            return name
        }
        return startingDisks.first { $0.value.all.contains(canonical) }?.key
    }

    /// Busy when a disk of `options` is another VM's writable disk, or a writable one of
    /// `options` is another VM's disk at all: two writers (or a writer and a reader) corrupt it.
    func checkDiskSharing(_ options: VMOptions) throws(ConciergeError) {
        let writable = Set(options.writableDisks.map(Self.canonicalPath))
        var others: [(name: String, all: Set<String>, writable: Set<String>)] = startingDisks.map {
            ($0.key, $0.value.all, $0.value.writable)
        }
        for (name, record) in state.vms {
            let theirsWritable = Set((record.writableDisks ?? []).map(Self.canonicalPath))
            others.append(
                (name, Set((record.disks ?? []).map(Self.canonicalPath)).union(theirsWritable), theirsWritable))
        }
        for disk in options.disks + options.writableDisks {
            let canonical = Self.canonicalPath(disk)
            for other in others
            where other.writable.contains(canonical) || (writable.contains(canonical) && other.all.contains(canonical))
            {
                throw .init(.busy, "the disk \(disk) is in use by VM \(other.name)")
            }
        }
    }

    /// `path` with symlinks and `..` resolved, so two spellings of one file compare equal.
    static func canonicalPath(_ path: String) -> String {
        guard let resolved = realpath(path, nil) else { return path }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}
