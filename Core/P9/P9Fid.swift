import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

// MARK: - Fids

/// One directory above a fid's file: its descriptor and the name it was reached by.
struct P9Link: Sendable {
    let file: Descriptor
    let name: String
}

/// What a fid is being used for besides naming a file.
enum P9FidUse: Sendable {
    /// Named only (Twalk, Tattach): no descriptor for I/O yet.
    case path
    /// Opened by Tlopen/Tlcreate; `flags` are the host open flags.
    case open(Descriptor, flags: Int32)
    /// Txattrwalk's result: the value (or name list) to read.
    case xattrRead(P9XattrBuffer)
    /// Txattrcreate: the value being written, set on Tclunk.
    case xattrWrite(name: String, flags: Int32, buffer: P9XattrBuffer)
}

/// A fid: its location as O_PATH descriptors (its file and the directories it was walked
/// through, from the export root down), the guest identity it was attached with, and what it is
/// open for. Shared by reference, so an operation holds the descriptors it uses even if a Tclunk
/// removes the fid meanwhile.
final class P9Fid: Sendable {
    struct State: Sendable {
        /// The fid's file.
        var file: Descriptor
        /// The name `file` was reached by ("" for the export root).
        var name: String
        /// The directories above `file`: ancestors[0] is the export root, ancestors.last the
        /// parent. Walking `..` pops this chain, so it never leaves the export.
        var ancestors: [P9Link]
        var use: P9FidUse = .path

        /// The directory holding this file; nil for the export root.
        var parent: Descriptor? { ancestors.last?.file }
    }

    /// The guest uid from Tattach (0xFFFFFFFF: none given).
    let uid: UInt32
    let state: Mutex<State>
    /// Serialises Treaddir on this fid (seek and read of one directory stream).
    let directoryLock = Mutex<Void>(())

    init(uid: UInt32, state: State) {
        self.uid = uid
        self.state = Mutex(state)
    }

    /// A snapshot of the fid's location and use.
    var current: State { state.withLock { $0 } }

    /// This fid's file (an O_PATH descriptor).
    var file: Descriptor { state.withLock { $0.file } }

    /// The descriptor opened for I/O, or EBADF if the fid is not open.
    func openDescriptor() throws(P9Errno) -> Descriptor {
        let use = state.withLock { $0.use }
        guard case .open(let descriptor, _) = use else { throw P9Errno(EBADF) }
        return descriptor
    }
}

// MARK: - Extended attribute buffers

/// Counts the bytes held in xattr buffers of one session, so that a guest cannot pin unbounded
/// memory with Txattrwalk/Txattrcreate fids.
final class P9XattrBudget: Sendable {
    let limit: Int
    let used = Atomic<Int>(0)

    init(limit: Int) { self.limit = limit }

    func reserve(_ count: Int) throws(P9Errno) {
        let after = used.add(count, ordering: .relaxed).newValue
        if after > limit {
            used.subtract(count, ordering: .relaxed)
            throw P9Errno(ENOSPC)
        }
    }

    func release(_ count: Int) { used.subtract(count, ordering: .relaxed) }
}

/// An xattr value or name list held by a fid; its size is charged to the session's budget
/// until the buffer goes.
final class P9XattrBuffer: Sendable {
    let capacity: Int
    let bytes: Mutex<[UInt8]>
    private let budget: P9XattrBudget

    init(capacity: Int, contents: [UInt8] = [], budget: P9XattrBudget) throws(P9Errno) {
        try budget.reserve(capacity)
        self.capacity = capacity
        self.bytes = Mutex(contents)
        self.budget = budget
    }

    deinit { budget.release(capacity) }
}
