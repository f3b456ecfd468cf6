// C shim for Linux interfaces Swift's Glibc module does not export: epoll, eventfd, and the
// prctl/seccomp/capability calls the sandbox uses.
#ifndef CLINUX_H
#define CLINUX_H

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>

/// accept4(2), which needs _GNU_SOURCE in glibc's headers.
int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags);

/// Names the calling thread (at most 15 bytes are kept), as `ps -L` and /proc show it.
static inline void clinux_set_thread_name(const char *name) { prctl(PR_SET_NAME, name, 0, 0, 0); }

#endif
