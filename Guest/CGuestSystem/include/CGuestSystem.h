// C shim for the Linux calls maitred makes that Swift's Glibc module lacks or cannot call
// (variadic ioctl and syscall, macros, structs with unions): module loading, pseudo-terminals,
// vsock sockets and power-off. (IPv4 interface and route setup is CLinux's, shared with the host.)
#ifndef CGUESTSYSTEM_H
#define CGUESTSYSTEM_H

#include <stdint.h>
#include <stddef.h>
#include <spawn.h>

/// pipe2(fds, O_CLOEXEC). Returns 0, or -errno.
int cgs_pipe(int fds[2]);

/// finit_module(2). Returns 0, or -errno.
int cgs_finit_module(int fd, const char *params);


/// Opens a pseudo-terminal pair: the master (non-blocking, close-on-exec) in *master and the
/// slave's path in `path`. Returns 0, or -errno.
int cgs_open_pty(int *master, char *path, size_t path_len);
/// TIOCSWINSZ. Returns 0, or -errno.
int cgs_set_window_size(int fd, unsigned rows, unsigned columns);

/// A blocking, close-on-exec AF_VSOCK stream connected to (cid, port). Returns the fd, or -errno.
int cgs_vsock_connect(unsigned cid, unsigned port);

/// posix_spawn's POSIX_SPAWN_SETSID (a GNU extension the Glibc module does not show).
short cgs_spawn_setsid_flag(void);
/// posix_spawn_file_actions_addchdir_np: the child starts in `path`. Returns 0, or an errno.
int cgs_spawn_add_chdir(posix_spawn_file_actions_t *actions, const char *path);

/// reboot(RB_POWER_OFF). Returns only on failure, with -errno.
int cgs_power_off(void);

#endif
