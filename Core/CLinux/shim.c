// The few C functions of the shim that are too long to live in include/CLinux.h as inline ones.
#define _GNU_SOURCE
#include "CLinux.h"

#include <errno.h>
#include <net/route.h>
#include <netinet/in.h>
#include <sys/syscall.h>
#include <sched.h>
#include <unistd.h>

// MARK: - CPU affinity

int clinux_get_thread_cpus(unsigned long long *mask, int words) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) return -errno;
    for (int word = 0; word < words; word++) {
        mask[word] = 0;
        for (int bit = 0; bit < 64; bit++)
            if (word * 64 + bit < CPU_SETSIZE && CPU_ISSET(word * 64 + bit, &set)) mask[word] |= 1ULL << bit;
    }
    return 0;
}

int clinux_set_thread_cpus(const unsigned long long *mask, int words) {
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int word = 0; word < words; word++)
        for (int bit = 0; bit < 64; bit++)
            if (mask[word] >> bit & 1) {
                if (word * 64 + bit >= CPU_SETSIZE) return -EINVAL;
                CPU_SET(word * 64 + bit, &set);
            }
    return sched_setaffinity(0, sizeof set, &set) == 0 ? 0 : -errno;
}

// MARK: - IPv4 interfaces and routes (maitred in the guest, concierge for TAPs on the host)

int clinux_interface_exists(const char *name) { return if_nametoindex(name) != 0; }

// Runs one interface ioctl on a throwaway AF_INET socket.
static int interface_ioctl(unsigned long request, struct ifreq *ifr) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int result = ioctl(fd, request, ifr) == 0 ? 0 : -errno;
    close(fd);
    return result;
}

static int set_name(struct ifreq *ifr, const char *name) {
    memset(ifr, 0, sizeof *ifr);
    if (strlen(name) >= IFNAMSIZ) return -ENAMETOOLONG;
    strncpy(ifr->ifr_name, name, IFNAMSIZ - 1);
    return 0;
}

static void set_ipv4(struct sockaddr *sa, uint32_t address) {
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = address};
    memcpy(sa, &sin, sizeof sin);
}

int clinux_interface_set_ipv4(const char *name, uint32_t address, uint32_t netmask) {
    struct ifreq ifr;
    int r = set_name(&ifr, name);
    if (r) return r;
    set_ipv4(&ifr.ifr_addr, address);
    if ((r = interface_ioctl(SIOCSIFADDR, &ifr))) return r;
    set_ipv4(&ifr.ifr_netmask, netmask);
    return interface_ioctl(SIOCSIFNETMASK, &ifr);
}

int clinux_interface_set_up(const char *name, int up) {
    struct ifreq ifr;
    int r = set_name(&ifr, name);
    if (r) return r;
    if ((r = interface_ioctl(SIOCGIFFLAGS, &ifr))) return r;
    if (up) ifr.ifr_flags |= IFF_UP; else ifr.ifr_flags &= ~IFF_UP;
    return interface_ioctl(SIOCSIFFLAGS, &ifr);
}

int clinux_interface_set_mtu(const char *name, int mtu) {
    struct ifreq ifr;
    int r = set_name(&ifr, name);
    if (r) return r;
    ifr.ifr_mtu = mtu;
    return interface_ioctl(SIOCSIFMTU, &ifr);
}

int clinux_route_add_default(uint32_t gateway) {
    struct rtentry route;
    memset(&route, 0, sizeof route);
    set_ipv4(&route.rt_dst, 0);
    set_ipv4(&route.rt_genmask, 0);
    set_ipv4(&route.rt_gateway, gateway);
    route.rt_flags = RTF_UP | RTF_GATEWAY;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int result = ioctl(fd, SIOCADDRT, &route) == 0 ? 0 : -errno;
    close(fd);
    return result;
}

// MARK: - pidfds

int clinux_pidfd_open(int pid) {
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    return fd >= 0 ? fd : -errno;
}

int clinux_pidfd_send_signal(int pidfd, int signal) {
    return syscall(SYS_pidfd_send_signal, pidfd, signal, NULL, 0) == 0 ? 0 : -errno;
}

// MARK: - Mounts

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>

int clinux_unshare_mount_namespace(void) { return unshare(CLONE_NEWNS) == 0 ? 0 : -errno; }

int clinux_mount_propagation(const char *path, int kind, int recursive) {
    unsigned long flags = kind == 2 ? MS_SHARED : kind == 1 ? MS_SLAVE : MS_PRIVATE;
    if (recursive) flags |= MS_REC;
    return mount(NULL, path, NULL, flags, NULL) == 0 ? 0 : -errno;
}

int clinux_mount_tmpfs(const char *path, const char *options) {
    return mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, options) == 0 ? 0 : -errno;
}

int clinux_mount_bind(const char *source, const char *target) {
    return mount(source, target, NULL, MS_BIND | MS_REC, NULL) == 0 ? 0 : -errno;
}

int clinux_unmount_detached(const char *path) { return umount2(path, MNT_DETACH) == 0 ? 0 : -errno; }

int clinux_pivot_to_cwd(void) {
    // The old root ends up stacked under the new one at "/"; detaching "/" then takes it away.
    if (syscall(SYS_pivot_root, ".", ".") != 0) return -errno;
    if (umount2(".", MNT_DETACH) != 0) return -errno;
    return chdir("/") == 0 ? 0 : -errno;
}

int clinux_clone_tree(int fd) {
    int tree = (int)syscall(SYS_open_tree, fd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE | AT_EMPTY_PATH);
    return tree >= 0 ? tree : -errno;
}

int clinux_tree_set_attributes(int tree_fd, int read_only) {
    struct mount_attr attributes;
    memset(&attributes, 0, sizeof attributes);
    attributes.attr_set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | (read_only ? MOUNT_ATTR_RDONLY : 0);
    long r = syscall(SYS_mount_setattr, tree_fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attributes, sizeof attributes);
    return r == 0 ? 0 : -errno;
}

int clinux_attach_tree(int tree_fd, const char *target) {
    long r = syscall(SYS_move_mount, tree_fd, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH);
    return r == 0 ? 0 : -errno;
}

// MARK: - Descriptor passing

long clinux_send_with_fds(int fd, const void *data, unsigned long len, const int *fds, int count) {
    struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    char control[CMSG_SPACE(sizeof(int) * 253)];
    if (count > 0) {
        if (count > 253) return -EINVAL;
        memset(control, 0, sizeof control);
        msg.msg_control = control;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * count);
        struct cmsghdr *header = CMSG_FIRSTHDR(&msg);
        header->cmsg_level = SOL_SOCKET;
        header->cmsg_type = SCM_RIGHTS;
        header->cmsg_len = CMSG_LEN(sizeof(int) * count);
        memcpy(CMSG_DATA(header), fds, sizeof(int) * count);
    }
    ssize_t sent = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    return sent >= 0 ? (long)sent : -errno;
}

long clinux_recv_with_fds(int fd, void *data, unsigned long len, int *fds, int max, int *count, int *truncated) {
    struct iovec iov = {.iov_base = data, .iov_len = len};
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    char control[CMSG_SPACE(sizeof(int) * 253)];
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    *count = 0;
    *truncated = 0;
    ssize_t received = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (received < 0) return -errno;
    if (msg.msg_flags & MSG_CTRUNC) *truncated = 1;
    for (struct cmsghdr *header = CMSG_FIRSTHDR(&msg); header; header = CMSG_NXTHDR(&msg, header)) {
        if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) continue;
        int n = (int)((header->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        int *received_fds = (int *)CMSG_DATA(header);
        for (int i = 0; i < n; i++) {
            if (*count < max) fds[(*count)++] = received_fds[i];
            else { close(received_fds[i]); *truncated = 1; }
        }
    }
    return (long)received;
}
