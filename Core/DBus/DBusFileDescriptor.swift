#if canImport(Glibc)
    import Glibc
#endif

/// A file descriptor inside a ``DBusValue`` (`h`). The object owns the descriptor and closes
/// it when the last reference goes; received descriptors are duplicates of the message's, so
/// they stay valid after the message is gone. Sending one duplicates it again (sd-bus does).
public final class DBusFileDescriptor: Sendable, Hashable, CustomStringConvertible {
    /// The descriptor, valid for the object's lifetime.
    public let fd: Int32

    /// Takes ownership of `fd`.
    public init(taking fd: Int32) {
        self.fd = fd
    }

    /// Owns a close-on-exec duplicate of `fd`; the caller keeps `fd`.
    public init(duplicating fd: Int32) throws(DBusError) {
        let copy = fcntl(fd, F_DUPFD_CLOEXEC, 3)
        guard copy >= 0 else { throw .system("duplicating descriptor \(fd)", errno) }
        self.fd = copy
    }

    deinit { close(fd) }

    /// A close-on-exec duplicate the caller owns (and must close), for keeping the descriptor
    /// beyond this object's life.
    public func duplicate() throws(DBusError) -> Int32 {
        let copy = fcntl(fd, F_DUPFD_CLOEXEC, 3)
        guard copy >= 0 else { throw .system("duplicating descriptor \(fd)", errno) }
        return copy
    }

    public static func == (lhs: DBusFileDescriptor, rhs: DBusFileDescriptor) -> Bool { lhs === rhs }
    public func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(self)) }
    public var description: String { "fd \(fd)" }
}
