// The 9P server's Linux calls; _GNU_SOURCE here, never in the header Swift imports.
#define _GNU_SOURCE 1
#include "CP9System.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <linux/openat2.h>

#ifndef SYS_openat2
#define SYS_openat2 437
#endif

const int P9SYS_O_PATH = O_PATH;
const int P9SYS_O_NOFOLLOW = O_NOFOLLOW;
const int P9SYS_O_DIRECTORY = O_DIRECTORY;
const int P9SYS_O_CLOEXEC = O_CLOEXEC;
const int P9SYS_O_DSYNC = O_DSYNC;
const int P9SYS_O_SYNC = O_SYNC;
const int P9SYS_AT_EMPTY_PATH = AT_EMPTY_PATH;
const int P9SYS_AT_SYMLINK_NOFOLLOW = AT_SYMLINK_NOFOLLOW;
const int P9SYS_AT_SYMLINK_FOLLOW = AT_SYMLINK_FOLLOW;
const int P9SYS_AT_REMOVEDIR = AT_REMOVEDIR;
const uint64_t P9SYS_RESOLVE_BENEATH = RESOLVE_BENEATH;
const uint64_t P9SYS_RESOLVE_NO_MAGICLINKS = RESOLVE_NO_MAGICLINKS;
const uint64_t P9SYS_RESOLVE_NO_SYMLINKS = RESOLVE_NO_SYMLINKS;
const short P9SYS_F_RDLCK = F_RDLCK;
const short P9SYS_F_WRLCK = F_WRLCK;
const short P9SYS_F_UNLCK = F_UNLCK;
const long P9SYS_UTIME_NOW = UTIME_NOW;
const long P9SYS_UTIME_OMIT = UTIME_OMIT;

int p9sys_openat2(int dirfd, const char *path, int flags, unsigned int mode, uint64_t resolve) {
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (uint64_t)(unsigned int)flags;
    how.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0;
    how.resolve = resolve;
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}

int p9sys_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags) {
    return (int)syscall(SYS_renameat2, olddirfd, oldpath, newdirfd, newpath, flags);
}

long p9sys_getdents64(int fd, void *buffer, unsigned long size) { return syscall(SYS_getdents64, fd, buffer, size); }

long p9sys_readlink_fd(int fd, void *buffer, unsigned long size) { return readlinkat(fd, "", buffer, size); }

int p9sys_ofd_setlock(int fd, short type, int64_t start, int64_t length) {
    struct flock lock;
    memset(&lock, 0, sizeof lock);
    lock.l_type = type;
    lock.l_whence = SEEK_SET;
    lock.l_start = start;
    lock.l_len = length;
    return fcntl(fd, F_OFD_SETLK, &lock);
}

int p9sys_ofd_getlock(int fd, short *type, int64_t *start, int64_t *length, int *pid) {
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

int p9sys_fstatfs(int fd, struct p9sys_statfs *out) {
    struct statfs s;
    if (fstatfs(fd, &s) < 0) return -1;
    out->type = (uint32_t)s.f_type;
    out->block_size = (uint32_t)s.f_bsize;
    out->blocks = s.f_blocks;
    out->blocks_free = s.f_bfree;
    out->blocks_available = s.f_bavail;
    out->files = s.f_files;
    out->files_free = s.f_ffree;
    uint64_t fsid;
    memcpy(&fsid, &s.f_fsid, sizeof fsid);
    out->fsid = fsid;
    out->name_length = (uint32_t)s.f_namelen;
    return 0;
}

long p9sys_getxattr(const char *path, const char *name, void *value, unsigned long size) {
    return getxattr(path, name, value, size);
}
long p9sys_listxattr(const char *path, char *list, unsigned long size) { return listxattr(path, list, size); }
int p9sys_setxattr(const char *path, const char *name, const void *value, unsigned long size, int flags) {
    return setxattr(path, name, value, size, flags);
}
int p9sys_removexattr(const char *path, const char *name) { return removexattr(path, name); }
