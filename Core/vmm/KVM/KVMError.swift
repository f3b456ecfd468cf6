#if canImport(Glibc)
    import Glibc
#endif

/// A failed KVM operation, naming the operation and the kernel's reason.
public enum KVMError: Error, Equatable, CustomStringConvertible {
    /// `open("/dev/kvm")` failed.
    case open(path: String, errno: Int32)
    /// An ioctl returned an error.
    case ioctl(String, errno: Int32)
    /// The kernel's KVM API is not the stable version 12.
    case apiVersion(Int32)
    /// A capability the VMM needs is missing.
    case missingCapability(String)
    /// mmap of a kernel-shared structure failed.
    case mmap(String, errno: Int32)
    /// An argument was rejected before reaching the kernel.
    case invalidArgument(String)

    public var description: String {
        switch self {
        case .open(let path, let code):
            return "cannot open \(path): \(errnoText(code))"
                + (code == ENOENT ? " (is the kvm module loaded?)" : "")
                + (code == EACCES ? " (is this user in the kvm group?)" : "")
        case .ioctl(let name, let code):
            return "\(name) failed: \(errnoText(code))"
        case .apiVersion(let version):
            return "KVM API version \(version) is not supported (need 12)"
        case .missingCapability(let name):
            return "KVM lacks the capability \(name)"
        case .mmap(let what, let code):
            return "cannot map \(what): \(errnoText(code))"
        case .invalidArgument(let why):
            return why
        }
    }
}

func errnoText(_ code: Int32) -> String {
    String(cString: strerror(code)) + " (errno \(code))"
}

/// Runs an ioctl with a pointer argument, retrying on EINTR; throws ``KVMError/ioctl(_:errno:)``.
@discardableResult
func kvmIoctl(_ fd: Int32, _ request: UInt, _ name: String, _ arg: UnsafeMutableRawPointer?) throws(KVMError) -> Int32 {
    while true {
        let result = ckvmIoctl(fd, request, arg)
        if result >= 0 { return result }
        if errno != EINTR { throw .ioctl(name, errno: errno) }
    }
}

/// Runs an ioctl with an integer argument, retrying on EINTR.
@discardableResult
func kvmIoctl(_ fd: Int32, _ request: UInt, _ name: String, value: UInt) throws(KVMError) -> Int32 {
    while true {
        let result = ckvmIoctlValue(fd, request, value)
        if result >= 0 { return result }
        if errno != EINTR { throw .ioctl(name, errno: errno) }
    }
}

/// Runs an ioctl whose argument is the struct `value`, passed by pointer.
@discardableResult
func kvmIoctl<T>(_ fd: Int32, _ request: UInt, _ name: String, with value: inout T) throws(KVMError) -> Int32 {
    // withUnsafeMutablePointer cannot carry a typed throw, so report through a result.
    let result: Result<Int32, KVMError> = withUnsafeMutablePointer(to: &value) { pointer in
        do throws(KVMError) { return .success(try kvmIoctl(fd, request, name, UnsafeMutableRawPointer(pointer))) } catch
        {
            return .failure(error)
        }
    }
    return try result.get()
}
