// The few C functions of the shim that are too long to live in include/CLinux.h as inline ones.
#define _GNU_SOURCE
#include "CLinux.h"

#include <errno.h>
#include <net/route.h>
#include <netinet/in.h>
#include <sys/syscall.h>
#include <unistd.h>

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
