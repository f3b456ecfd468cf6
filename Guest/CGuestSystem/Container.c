// Starting a container's first process: clone3 into new namespaces (and a cgroup), then, in the
// child, only system calls (maitred is multithreaded: nothing that locks or allocates) to build
// the container's root and execute the program.
#define _GNU_SOURCE
#include "CGuestSystem.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

struct failure {
    int step;
    int error;
};

static void fail(int pipe_fd, int step) {
    struct failure failure = {step, errno};
    (void)!write(pipe_fd, &failure, sizeof failure);
    _exit(127);
}

// mkdir that is content when the folder is there.
static int ensure_dir(const char *path, mode_t mode) {
    return mkdir(path, mode) == 0 || errno == EEXIST ? 0 : -1;
}

static const char *const devices[] = {"null", "zero", "full", "random", "urandom", "tty"};

// In the child, with the working directory at the container's root (not yet pivoted): the
// kernel file systems and a small /dev of its own.
static int populate(const struct cgs_container *c, int *step) {
    *step = CGS_STEP_PROC;
    if (ensure_dir("proc", 0555) || mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL)) return -1;
    *step = CGS_STEP_SYS;
    if (ensure_dir("sys", 0555) ||
        mount("sysfs", "sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL))
        return -1;
    *step = CGS_STEP_DEV;
    if (ensure_dir("dev", 0755) || mount("tmpfs", "dev", "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=1m"))
        return -1;
    char target[32], source[32];
    for (size_t i = 0; i < sizeof devices / sizeof devices[0]; i++) {
        // Bind the guest's own device nodes: no mknod, and no device beyond these.
        strcpy(target, "dev/");
        strcat(target, devices[i]);
        strcpy(source, "/dev/");
        strcat(source, devices[i]);
        int fd = open(target, O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
        if (fd < 0) return -1;
        close(fd);
        if (mount(source, target, NULL, MS_BIND, NULL)) return -1;
    }
    if (ensure_dir("dev/pts", 0755) ||
        mount("devpts", "dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620") ||
        symlink("pts/ptmx", "dev/ptmx") || ensure_dir("dev/shm", 01777) ||
        mount("tmpfs", "dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") || symlink("/proc/self/fd", "dev/fd") ||
        symlink("/proc/self/fd/0", "dev/stdin") || symlink("/proc/self/fd/1", "dev/stdout") ||
        symlink("/proc/self/fd/2", "dev/stderr"))
        return -1;
    *step = CGS_STEP_TOKEN;
    int fd = open("dev/.container_token", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return -1;
    size_t length = strlen(c->token);
    if (write(fd, c->token, length) != (ssize_t)length) {
        close(fd);
        return -1;
    }
    close(fd);
    *step = CGS_STEP_RUN;
    if (ensure_dir("run", 0755) || mount("tmpfs", "run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=755")) return -1;
    return 0;
}

static void child(const struct cgs_container *c, int pipe_fd) {
    int step = CGS_STEP_SETUP;
    sigset_t none;
    sigemptyset(&none);
    if (sigprocmask(SIG_SETMASK, &none, NULL) || signal(SIGPIPE, SIG_DFL) == SIG_ERR || setsid() < 0)
        fail(pipe_fd, step);
    // Nothing mounted here may reach the guest's own tree.
    step = CGS_STEP_ROOT;
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL)) fail(pipe_fd, step);
    const char *root = c->rootfs;
    if (c->overlay_target) {
        step = CGS_STEP_OVERLAY;
        if (mount("overlay", c->overlay_target, "overlay", 0, c->overlay_options)) fail(pipe_fd, step);
        if (c->overlay_hide && mount("tmpfs", c->overlay_hide, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                                     "size=4k,mode=0755"))
            fail(pipe_fd, step);
        root = c->overlay_target;
        step = CGS_STEP_ROOT;
    }
    if (mount(root, root, NULL, MS_BIND | MS_REC, NULL) || chdir(root)) fail(pipe_fd, step);
    if (populate(c, &step)) fail(pipe_fd, step);
    step = CGS_STEP_HOSTNAME;
    if (sethostname(c->hostname, strlen(c->hostname))) fail(pipe_fd, step);
    // pivot_root(".", "."): the old root ends up under the new one, and is then detached. The
    // initramfs (rootfs) cannot be pivoted away from (EINVAL): then the new root is moved over
    // "/" and chrooted into, as runc does without pivot_root.
    step = CGS_STEP_PIVOT;
    int pivoted = c->move_root ? -1 : (int)syscall(SYS_pivot_root, ".", ".");
    if (pivoted == 0) {
        if (umount2(".", MNT_DETACH) || chdir("/")) fail(pipe_fd, step);
    } else if (c->move_root || errno == EINVAL) {
        if (mount(".", "/", NULL, MS_MOVE, NULL) || chroot(".") || chdir("/")) fail(pipe_fd, step);
    } else {
        fail(pipe_fd, step);
    }
    step = CGS_STEP_STDIO;
    if (dup2(c->stdio_fd, 0) < 0 || dup2(c->stdio_fd, 1) < 0 || dup2(c->stdio_fd, 2) < 0) fail(pipe_fd, step);
    step = CGS_STEP_EXEC;
    if (c->program_fd >= 0) {
        syscall(SYS_execveat, c->program_fd, "", c->argv, c->envp, AT_EMPTY_PATH);
    } else {
        execve(c->argv[0], c->argv, c->envp);
    }
    fail(pipe_fd, step);
}

int cgs_start_container(const struct cgs_container *c, int *pid, int *step, int *error) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC)) return -errno;
    struct clone_args args;
    memset(&args, 0, sizeof args);
    args.flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWCGROUP;
    if (c->cgroup_fd >= 0) {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = (unsigned long long)c->cgroup_fd;
    }
    args.exit_signal = SIGCHLD;
    long child_pid = syscall(SYS_clone3, &args, sizeof args);
    if (child_pid < 0) {
        int saved = errno;
        close(fds[0]);
        close(fds[1]);
        return -saved;
    }
    if (child_pid == 0) {
        close(fds[0]);
        child(c, fds[1]);
    }
    close(fds[1]);
    *pid = (int)child_pid;
    struct failure failure;
    ssize_t n;
    do { n = read(fds[0], &failure, sizeof failure); } while (n < 0 && errno == EINTR);
    close(fds[0]);
    if (n == (ssize_t)sizeof failure) {
        *step = failure.step;
        *error = failure.error;
        return 1;  // started, then failed: the caller reaps it
    }
    return 0;
}
