// C shim for the 9P server: the Linux calls and constants Swift's Glibc module does not export
// (openat2 has no glibc wrapper; renameat2, getdents64 and the O_PATH/AT_EMPTY_PATH/OFD-lock
// constants sit behind _GNU_SOURCE, and `syscall` is variadic).
#ifndef CP9SYSTEM_H
#define CP9SYSTEM_H

#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>
#include <linux/openat2.h>

#ifndef SYS_openat2
#define SYS_openat2 437
#endif

static const int P9SYS_O_PATH = O_PATH;
static const int P9SYS_O_NOFOLLOW = O_NOFOLLOW;
static const int P9SYS_O_DIRECTORY = O_DIRECTORY;
static const int P9SYS_O_CLOEXEC = O_CLOEXEC;
static const int P9SYS_O_DIRECT = O_DIRECT;
static const int P9SYS_O_NOATIME = O_NOATIME;
static const int P9SYS_O_DSYNC = O_DSYNC;
static const int P9SYS_O_SYNC = O_SYNC;
static const int P9SYS_AT_EMPTY_PATH = AT_EMPTY_PATH;
static const int P9SYS_AT_SYMLINK_NOFOLLOW = AT_SYMLINK_NOFOLLOW;
static const int P9SYS_AT_SYMLINK_FOLLOW = AT_SYMLINK_FOLLOW;
static const int P9SYS_AT_REMOVEDIR = AT_REMOVEDIR;
static const unsigned long long P9SYS_RESOLVE_BENEATH = RESOLVE_BENEATH;
static const unsigned long long P9SYS_RESOLVE_NO_MAGICLINKS = RESOLVE_NO_MAGICLINKS;
static const unsigned long long P9SYS_RESOLVE_NO_SYMLINKS = RESOLVE_NO_SYMLINKS;
static const unsigned long long P9SYS_RESOLVE_NO_XDEV = RESOLVE_NO_XDEV;

/// openat2(2): opens `path` relative to `dirfd` with the RESOLVE_* rules in `resolve`.
/// Returns the new descriptor, or -1 with errno set.
static inline int p9sys_openat2(int dirfd, const char *path, int flags, unsigned int mode,
                                unsigned long long resolve) {
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (unsigned long long)(unsigned int)flags;
    how.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0;
    how.resolve = resolve;
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}

/// renameat2(2) with `flags` (RENAME_NOREPLACE, ...; 0 behaves as renameat).
static inline int p9sys_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath,
                                  unsigned int flags) {
    return (int)syscall(SYS_renameat2, olddirfd, oldpath, newdirfd, newpath, flags);
}

/// getdents64(2): fills `buffer` with `struct linux_dirent64` records; returns bytes or -1.
static inline long p9sys_getdents64(int fd, void *buffer, unsigned long size) {
    return syscall(SYS_getdents64, fd, buffer, size);
}

/// Takes or releases an open-file-description lock (F_OFD_SETLK, never waits).
/// `type` is F_RDLCK, F_WRLCK or F_UNLCK. Returns 0, or -1 with errno (EAGAIN: held elsewhere).
static inline int p9sys_ofd_setlock(int fd, short type, long long start, long long length) {
    struct flock lock;
    memset(&lock, 0, sizeof lock);
    lock.l_type = type;
    lock.l_whence = SEEK_SET;
    lock.l_start = start;
    lock.l_len = length;
    return fcntl(fd, F_OFD_SETLK, &lock);
}

/// F_OFD_GETLK: on entry the lock wanted; on return the conflicting lock (or F_UNLCK in `type`).
static inline int p9sys_ofd_getlock(int fd, short *type, long long *start, long long *length, int *pid) {
    struct flock lock;
    memset(&lock, 0, sizeof lock);
    lock.l_type = *type;
    lock.l_whence = SEEK_SET;
    lock.l_start = *start;
    lock.l_len = *length;
    if (fcntl(fd, F_OFD_GETLK, &lock) < 0) return -1;
    *type = lock.l_type;
    *start = lock.l_start;
    *length = lock.l_len;
    *pid = lock.l_pid;
    return 0;
}

static const short P9SYS_F_RDLCK = F_RDLCK;
static const short P9SYS_F_WRLCK = F_WRLCK;
static const short P9SYS_F_UNLCK = F_UNLCK;

#endif
