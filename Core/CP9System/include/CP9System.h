// C shim for the 9P server: the Linux calls and constants Swift's Glibc module does not export
// (openat2 has no glibc wrapper; renameat2, getdents64, O_PATH, AT_EMPTY_PATH and OFD locks sit
// behind _GNU_SOURCE, which this header must not define for Swift's sake: shim.c does).
#ifndef CP9SYSTEM_H
#define CP9SYSTEM_H

#include <stdint.h>

extern const int P9SYS_O_PATH;
extern const int P9SYS_O_NOFOLLOW;
extern const int P9SYS_O_DIRECTORY;
extern const int P9SYS_O_CLOEXEC;
extern const int P9SYS_O_DSYNC;
extern const int P9SYS_O_SYNC;
extern const int P9SYS_AT_EMPTY_PATH;
extern const int P9SYS_AT_SYMLINK_NOFOLLOW;
extern const int P9SYS_AT_SYMLINK_FOLLOW;
extern const int P9SYS_AT_REMOVEDIR;
extern const uint64_t P9SYS_RESOLVE_BENEATH;
extern const uint64_t P9SYS_RESOLVE_NO_MAGICLINKS;
extern const uint64_t P9SYS_RESOLVE_NO_SYMLINKS;
extern const short P9SYS_F_RDLCK;
extern const short P9SYS_F_WRLCK;
extern const short P9SYS_F_UNLCK;
/// utimensat's special nanosecond values.
extern const long P9SYS_UTIME_NOW;
extern const long P9SYS_UTIME_OMIT;

/// openat2(2) (syscall 437): opens `path` relative to `dirfd` with the RESOLVE_* rules in
/// `resolve`. Returns the new descriptor, or -1 with errno set.
int p9sys_openat2(int dirfd, const char *path, int flags, unsigned int mode, uint64_t resolve);

/// renameat2(2) with `flags` (0 behaves as renameat).
int p9sys_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags);

/// getdents64(2): fills `buffer` with `struct linux_dirent64` records; returns bytes or -1.
long p9sys_getdents64(int fd, void *buffer, unsigned long size);

/// readlinkat(fd, "", ...) on an O_PATH descriptor of a symlink: the target's bytes (not
/// NUL-terminated) or -1.
long p9sys_readlink_fd(int fd, void *buffer, unsigned long size);

/// Takes or releases an open-file-description lock (F_OFD_SETLK, never waits). `type` is
/// F_RDLCK, F_WRLCK or F_UNLCK. Returns 0, or -1 with errno (EAGAIN: held elsewhere).
int p9sys_ofd_setlock(int fd, short type, int64_t start, int64_t length);

/// F_OFD_GETLK: on entry the lock wanted; on return the conflicting lock (or F_UNLCK in `type`).
int p9sys_ofd_getlock(int fd, short *type, int64_t *start, int64_t *length, int *pid);

/// The fields of struct statfs that Rstatfs carries.
struct p9sys_statfs {
    uint32_t type;
    uint32_t block_size;
    uint64_t blocks, blocks_free, blocks_available, files, files_free, fsid;
    uint32_t name_length;
};

/// fstatfs(2) (allowed on O_PATH descriptors). Returns 0 or -1.
int p9sys_fstatfs(int fd, struct p9sys_statfs *out);

// Extended attributes by path (used with /proc/self/fd/N of an O_PATH descriptor, since the
// f*xattr calls refuse O_PATH descriptors).
long p9sys_getxattr(const char *path, const char *name, void *value, unsigned long size);
long p9sys_listxattr(const char *path, char *list, unsigned long size);
int p9sys_setxattr(const char *path, const char *name, const void *value, unsigned long size, int flags);
int p9sys_removexattr(const char *path, const char *name);

#endif
