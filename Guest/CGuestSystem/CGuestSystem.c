#define _GNU_SOURCE
#include "CGuestSystem.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

int cgs_pipe(int fds[2]) { return pipe2(fds, O_CLOEXEC) == 0 ? 0 : -errno; }

int cgs_finit_module(int fd, const char *params) {
    return syscall(SYS_finit_module, fd, params, 0) == 0 ? 0 : -errno;
}

int cgs_interface_exists(const char *name) { return if_nametoindex(name) != 0; }

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

int cgs_interface_set_ipv4(const char *name, uint32_t address, uint32_t netmask) {
    struct ifreq ifr;
    int r = set_name(&ifr, name);
    if (r) return r;
    set_ipv4(&ifr.ifr_addr, address);
    if ((r = interface_ioctl(SIOCSIFADDR, &ifr))) return r;
    set_ipv4(&ifr.ifr_netmask, netmask);
    return interface_ioctl(SIOCSIFNETMASK, &ifr);
}

int cgs_interface_set_up(const char *name, int up) {
    struct ifreq ifr;
    int r = set_name(&ifr, name);
    if (r) return r;
    if ((r = interface_ioctl(SIOCGIFFLAGS, &ifr))) return r;
    if (up) ifr.ifr_flags |= IFF_UP; else ifr.ifr_flags &= ~IFF_UP;
    return interface_ioctl(SIOCSIFFLAGS, &ifr);
}

int cgs_interface_set_mtu(const char *name, int mtu) {
    struct ifreq ifr;
    int r = set_name(&ifr, name);
    if (r) return r;
    ifr.ifr_mtu = mtu;
    return interface_ioctl(SIOCSIFMTU, &ifr);
}

int cgs_route_add_default(uint32_t gateway) {
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

int cgs_open_pty(int *master, char *path, size_t path_len) {
    int fd = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return -errno;
    if (grantpt(fd) != 0 || unlockpt(fd) != 0 || ptsname_r(fd, path, path_len) != 0) {
        int saved = errno;
        close(fd);
        return -saved;
    }
    *master = fd;
    return 0;
}

int cgs_set_window_size(int fd, unsigned rows, unsigned columns) {
    struct winsize size = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)columns};
    return ioctl(fd, TIOCSWINSZ, &size) == 0 ? 0 : -errno;
}

int cgs_vsock_connect(unsigned cid, unsigned port) {
    int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    struct sockaddr_vm address = {.svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = port};
    if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0) {
        int saved = errno;
        close(fd);
        return -saved;
    }
    return fd;
}

short cgs_spawn_setsid_flag(void) { return POSIX_SPAWN_SETSID; }

int cgs_spawn_add_chdir(posix_spawn_file_actions_t *actions, const char *path) {
    return posix_spawn_file_actions_addchdir_np(actions, path);
}

int cgs_power_off(void) {
    reboot(RB_POWER_OFF);
    return -errno;
}
