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

/// A container's first process: where its root is, what it runs, and what it gets.
struct cgs_container {
    /// The container's root folder (absolute), its hostname and its token's text.
    const char *rootfs;
    const char *hostname;
    const char *token;
    /// The program: an executable's descriptor (run with execveat, so the root need not hold
    /// it), or -1 for argv[0] as a path inside the container.
    int program_fd;
    char *const *argv;
    char *const *envp;
    /// A cgroup2 folder's descriptor to start in, or -1.
    int cgroup_fd;
    /// What becomes its standard input, output and error.
    int stdio_fd;
    /// Move the root over "/" and chroot instead of pivot_root (what happens anyway when the
    /// guest runs from its initramfs, which pivot_root refuses); for tests of that path.
    int move_root;
    /// When set, an overlay is mounted at `overlay_target` with these options (lowerdir=rootfs,
    /// upperdir, workdir) in the container's mount namespace only, and becomes its root.
    const char *overlay_target;
    const char *overlay_options;
    /// When set, a folder in the overlay covered by an empty read-only tmpfs: where the
    /// image holds the changes of containers (its own and others'), which it must not see.
    const char *overlay_hide;
};

/// The steps of building a container, for errors.
enum {
    CGS_STEP_SETUP = 1,
    CGS_STEP_ROOT,
    CGS_STEP_PROC,
    CGS_STEP_SYS,
    CGS_STEP_DEV,
    CGS_STEP_TOKEN,
    CGS_STEP_RUN,
    CGS_STEP_HOSTNAME,
    CGS_STEP_PIVOT,
    CGS_STEP_STDIO,
    CGS_STEP_EXEC,
    CGS_STEP_OVERLAY,
};

/// Starts a container's first process in new mount, PID, UTS, IPC and cgroup namespaces: its
/// root bind-mounted and pivoted to, fresh proc, read-only sys, a /dev of null, zero, full,
/// random, urandom, tty, pts and shm, the token at /dev/.container_token (0600), a tmpfs /run.
/// Returns 0 once the program runs (*pid set); 1 when the child started but a step failed
/// (*pid, *step and *error set; the child has exited and must be reaped); -errno when no child
/// started.
int cgs_start_container(const struct cgs_container *container, int *pid, int *step, int *error);

/// reboot(RB_POWER_OFF). Returns only on failure, with -errno.
int cgs_power_off(void);

#endif
