import GuestMemory

/// The PVH boot ABI's start-of-day structure, `struct hvm_start_info` version 1 (Xen's
/// `arch-x86/hvm/start_info.h`): the kernel finds it through `ebx` at its 32-bit entry point.
///
/// Addresses of 0 mean "not present". Every field is little-endian; the structure is 56 bytes.
struct PVHStartInfo: Sendable, Equatable {
    /// `XEN_HVM_START_MAGIC_VALUE` ("xEn3" with the 0x80 bit of the "E" set).
    static let magic: UInt32 = 0x336E_C578
    /// Version 1 adds the memory map, which Linux needs outside Xen.
    static let version: UInt32 = 1
    static let size = 56

    var flags: UInt32 = 0
    var moduleCount: UInt32 = 0
    var moduleListAddress: UInt64 = 0
    var commandLineAddress: UInt64 = 0
    var rsdpAddress: UInt64 = 0
    var memoryMapAddress: UInt64 = 0
    var memoryMapEntries: UInt32 = 0

    /// The 56 bytes the guest reads.
    var bytes: [UInt8] {
        var bytes = [UInt8](repeating: 0, count: Self.size)
        bytes.storeLE(Self.magic, at: 0)
        bytes.storeLE(Self.version, at: 4)
        bytes.storeLE(flags, at: 8)
        bytes.storeLE(moduleCount, at: 12)
        bytes.storeLE(moduleListAddress, at: 16)
        bytes.storeLE(commandLineAddress, at: 24)
        bytes.storeLE(rsdpAddress, at: 32)
        bytes.storeLE(memoryMapAddress, at: 40)
        bytes.storeLE(memoryMapEntries, at: 48)
        // 52: reserved, zero.
        return bytes
    }
}

// MARK: - Modules

/// One entry of the PVH module list, `struct hvm_modlist_entry`: Linux takes module 0 as its
/// initrd. 32 bytes.
struct PVHModule: Sendable, Equatable {
    static let size = 32

    var address: UInt64
    var size: UInt64
    /// The module's own command line; 0 for none.
    var commandLineAddress: UInt64 = 0

    var bytes: [UInt8] {
        var bytes = [UInt8](repeating: 0, count: Self.size)
        bytes.storeLE(address, at: 0)
        bytes.storeLE(size, at: 8)
        bytes.storeLE(commandLineAddress, at: 16)
        // 24: reserved, zero.
        return bytes
    }
}

// MARK: - Memory map

/// One entry of the PVH memory map, `struct hvm_memmap_table_entry`; its types are the e820
/// types. 24 bytes.
struct PVHMemoryMapEntry: Sendable, Equatable {
    static let size = 24

    var address: UInt64
    var size: UInt64
    var type: UInt32

    init(_ entry: E820Entry) {
        address = entry.address
        size = entry.size
        type = entry.kind.rawValue
    }

    var bytes: [UInt8] {
        var bytes = [UInt8](repeating: 0, count: Self.size)
        bytes.storeLE(address, at: 0)
        bytes.storeLE(size, at: 8)
        bytes.storeLE(type, at: 16)
        // 20: reserved, zero.
        return bytes
    }
}
