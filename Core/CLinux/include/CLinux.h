// C shim for Linux interfaces Swift's Glibc module does not export: epoll, eventfd, the
// prctl/seccomp/capability calls the sandbox uses, the TUN/TAP ioctls, IPv4 interface setup,
// pidfds, and the FUSE protocol's structures (<linux/fuse.h>).
#ifndef CLINUX_H
#define CLINUX_H

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/ioctl.h>
#include <net/if.h>
#include <linux/if_tun.h>
#include <linux/fuse.h>
#include <sys/mount.h>
#include <string.h>

/// accept4(2), which needs _GNU_SOURCE in glibc's headers.
int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags);
/// pipe2(2), setresuid(2) and setresgid(2), behind _GNU_SOURCE too.
int pipe2(int fds[2], int flags);
int setresuid(unsigned int ruid, unsigned int euid, unsigned int suid);
int setresgid(unsigned int rgid, unsigned int egid, unsigned int sgid);
/// O_PATH (open(2)): a descriptor that names a file without opening it, also behind _GNU_SOURCE.
static const int CLINUX_O_PATH = 010000000;

/// The calling thread's CPU affinity as a bit mask of `words` 64-bit words (CPU n is bit n % 64
/// of word n / 64): sched_getaffinity(2) and sched_setaffinity(2) on thread 0, behind
/// _GNU_SOURCE too. Return 0 or -errno.
int clinux_get_thread_cpus(unsigned long long *mask, int words);
int clinux_set_thread_cpus(const unsigned long long *mask, int words);

/// Names the calling thread (at most 15 bytes are kept), as `ps -L` and /proc show it.
static inline void clinux_set_thread_name(const char *name) { prctl(PR_SET_NAME, name, 0, 0, 0); }

/// PR_SET_DUMPABLE: 1 lets a process that changed its uid keep /proc/self/fd usable. Returns 0 or -1.
static inline int clinux_set_dumpable(int dumpable) { return prctl(PR_SET_DUMPABLE, dumpable, 0, 0, 0); }

// MARK: - TUN/TAP (ioctl is variadic and the request numbers are function-like macros)

/// TUNSETOFFLOAD's request number, for seccomp rules.
static const unsigned long CLINUX_TUNSETOFFLOAD = TUNSETOFFLOAD;

/// TUNSETIFF: attaches `fd` (an open /dev/net/tun) to the interface `name` (created if it does
/// not exist) with `flags` (IFF_TAP, IFF_NO_PI, IFF_VNET_HDR, ...). Returns 0 and copies the
/// interface's name to `name_out` (IFNAMSIZ bytes), or -1 with errno set.
static inline int clinux_tun_set_iff(int fd, const char *name, int flags, char *name_out) {
    struct ifreq request;
    memset(&request, 0, sizeof request);
    strncpy(request.ifr_name, name, IFNAMSIZ - 1);
    request.ifr_flags = (short)flags;
    if (ioctl(fd, TUNSETIFF, &request) < 0) return -1;
    memcpy(name_out, request.ifr_name, IFNAMSIZ);
    name_out[IFNAMSIZ - 1] = 0;
    return 0;
}

/// TUNGETIFF: the flags and interface name of the TUN/TAP device `fd` is attached to. Returns 0,
/// or -1 with errno set (EBADFD for a tun descriptor not attached, EINVAL or ENOTTY otherwise).
static inline int clinux_tun_get_iff(int fd, int *flags, char *name_out) {
    struct ifreq request;
    memset(&request, 0, sizeof request);
    if (ioctl(fd, TUNGETIFF, &request) < 0) return -1;
    *flags = (unsigned short)request.ifr_flags;
    memcpy(name_out, request.ifr_name, IFNAMSIZ);
    name_out[IFNAMSIZ - 1] = 0;
    return 0;
}

/// TUNSETVNETHDRSZ: the size of the virtio-net header leading each frame read or written.
static inline int clinux_tun_set_vnet_hdr_size(int fd, int size) { return ioctl(fd, TUNSETVNETHDRSZ, &size); }

/// TUNSETOFFLOAD: which offloads (TUN_F_CSUM, TUN_F_TSO4, ...) frames read from `fd` may carry.
static inline int clinux_tun_set_offload(int fd, unsigned int flags) {
    return ioctl(fd, TUNSETOFFLOAD, (unsigned long)flags);
}

// MARK: - Spawning

#include <signal.h>
#include <spawn.h>

/// Makes a child of posix_spawn start with no signal blocked and every signal at its default
/// action, whatever the (multithreaded) parent blocks or handles, plus `extra_flags` (such as
/// POSIX_SPAWN_SETSID). Returns posix_spawnattr_setflags' result.
static inline int clinux_spawnattr_reset_signals(posix_spawnattr_t *attr, short extra_flags) {
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(attr, &none);
    posix_spawnattr_setsigdefault(attr, &all);
    return posix_spawnattr_setflags(attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | extra_flags);
}

// MARK: - Sparse files

/// lseek(2) whences that glibc hides behind _GNU_SOURCE: the next data, the next hole.
static const int CLINUX_SEEK_DATA = 3;
static const int CLINUX_SEEK_HOLE = 4;

// MARK: - IPv4 interfaces and routes (shim.c)

#include <stdint.h>

/// Whether an interface of this name exists (if_nametoindex).
int clinux_interface_exists(const char *name);
/// SIOCSIFADDR + SIOCSIFNETMASK; addresses in network byte order. Returns 0, or -errno.
int clinux_interface_set_ipv4(const char *name, uint32_t address, uint32_t netmask);
/// Sets (or clears) IFF_UP. Returns 0, or -errno.
int clinux_interface_set_up(const char *name, int up);
/// SIOCSIFMTU. Returns 0, or -errno.
int clinux_interface_set_mtu(const char *name, int mtu);
/// SIOCADDRT of a default route through `gateway` (network byte order). Returns 0, or -errno.
int clinux_route_add_default(uint32_t gateway);

// MARK: - pidfds (shim.c; syscall is variadic)

/// pidfd_open(2): a descriptor that becomes readable when process `pid` exits. Returns it, or -errno.
int clinux_pidfd_open(int pid);
/// pidfd_send_signal(2). Returns 0, or -errno.
int clinux_pidfd_send_signal(int pidfd, int signal);

// MARK: - Descriptor passing (shim.c: the CMSG macros)

/// sendmsg(2) of `len` bytes with `count` descriptors as SCM_RIGHTS (none when 0), without
/// blocking or SIGPIPE. Returns the bytes sent, or -errno.
long clinux_send_with_fds(int fd, const void *data, unsigned long len, const int *fds, int count);
/// recvmsg(2) of up to `len` bytes and up to `max` descriptors (close-on-exec), without
/// blocking. Returns the bytes read (0: end of stream), or -errno; `*count` gets the number of
/// descriptors placed in `fds`, `*truncated` 1 when more were sent than fit (those are lost).
long clinux_recv_with_fds(int fd, void *data, unsigned long len, int *fds, int max, int *count, int *truncated);

// MARK: - Mounts (shim.c): the new mount API and what a sandboxed server needs to set itself up

/// unshare(CLONE_NEWNS): this process gets its own copy of the mount table. Returns 0, or -errno.
int clinux_unshare_mount_namespace(void);
/// mount(2) changing the propagation of `path` (and its submounts when `recursive`): `kind` 0
/// private, 1 slave, 2 shared. Returns 0, or -errno.
int clinux_mount_propagation(const char *path, int kind, int recursive);
/// A tmpfs at `path` (nosuid, nodev, noexec) with `options` ("mode=0755,size=1m"). Returns 0, or -errno.
int clinux_mount_tmpfs(const char *path, const char *options);
/// A recursive bind mount of `source` at `target`. Returns 0, or -errno.
int clinux_mount_bind(const char *source, const char *target);
/// umount2(`path`, MNT_DETACH): the mount and everything below it. Returns 0, or -errno.
int clinux_unmount_detached(const char *path);
/// pivot_root(".", ".") then unmounting the old root: the current directory becomes "/".
/// Returns 0, or -errno.
int clinux_pivot_to_cwd(void);
/// open_tree(`fd`, "", OPEN_TREE_CLONE | AT_RECURSIVE | AT_EMPTY_PATH): a detached copy of the
/// mount tree at `fd` (an O_PATH descriptor). Returns its descriptor, or -errno.
int clinux_clone_tree(int fd);
/// mount_setattr on a detached tree: read-only when `read_only`, always nosuid and nodev, for the
/// tree and its submounts. Returns 0, or -errno.
int clinux_tree_set_attributes(int tree_fd, int read_only);
/// move_mount of a detached tree onto `target`. Returns 0, or -errno.
int clinux_attach_tree(int tree_fd, const char *target);

#endif
