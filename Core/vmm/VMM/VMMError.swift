#if canImport(Glibc)
    import Glibc
#endif

/// A VM that could not be built or run, with what failed in words a user can act on.
public struct VMMError: Error, CustomStringConvertible {
    public let description: String

    public init(_ description: String) { self.description = description }

    /// A file that could not be read.
    static func file(_ what: String, _ path: String, errno code: Int32) -> VMMError {
        VMMError("cannot read the \(what) \(path): \(String(cString: strerror(code)))")
    }
}
