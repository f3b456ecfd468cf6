#define _GNU_SOURCE
#include "CGuestSystem.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
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
