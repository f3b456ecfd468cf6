import CKVM

// Swift names for the shim's C functions, so call sites read as Swift.
@inline(__always) func ckvmIoctl(_ fd: Int32, _ request: UInt, _ arg: UnsafeMutableRawPointer?) -> Int32 {
    ckvm_ioctl(fd, request, arg)
}

@inline(__always) func ckvmIoctlValue(_ fd: Int32, _ request: UInt, _ arg: UInt) -> Int32 {
    ckvm_ioctl_value(fd, request, arg)
}
