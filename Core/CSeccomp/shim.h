// libseccomp (Debian's libseccomp-dev) plus what Swift cannot import from it or from
// <linux/capability.h>: function-like action macros, the SIGSYS reporter, and capset(2).
#ifndef CSECCOMP_SHIM_H
#define CSECCOMP_SHIM_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE  // REG_RSI in <sys/ucontext.h>
#endif

#include <errno.h>
#include <linux/capability.h>
#include <seccomp.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/ucontext.h>
#include <unistd.h>

static inline uint32_t cseccomp_act_errno(uint16_t code) { return SCMP_ACT_ERRNO(code); }

/// Prefix of the line the SIGSYS reporter writes, set once before the filter is loaded.
static char cseccomp_report_prefix[64] = "sandbox";
static int cseccomp_report_status = 1;

static inline void cseccomp_on_sigsys(int signo, siginfo_t *info, void *context) {
    (void)signo;
    // Only async-signal-safe calls: format the number by hand, write(2), _exit(2).
    char line[160];
    size_t n = 0;
    const char *parts[] = {cseccomp_report_prefix, ": the sandbox blocked system call "};
    for (int p = 0; p < 2; p++)
        for (const char *c = parts[p]; *c && n < sizeof(line) - 40; c++) line[n++] = *c;
    char digits[12];
    int d = 0;
    unsigned int number = (unsigned int)info->si_syscall;
    do {
        digits[d++] = (char)('0' + number % 10);
        number /= 10;
    } while (number > 0 && d < (int)sizeof(digits));
    while (d > 0) line[n++] = digits[--d];
    const char *tail = " (see `ausyscall` or /usr/include/asm/unistd_64.h)";
    for (const char *c = tail; *c && n < sizeof(line) - 1; c++) line[n++] = *c;
#if defined(__x86_64__)
    // openat(2): say which file, the usual surprise in an allowlist.
    if (info->si_syscall == SYS_openat && context != NULL) {
        const char *path = (const char *)((ucontext_t *)context)->uc_mcontext.gregs[REG_RSI];
        const char *opening = " opening ";
        ssize_t ignored = write(2, line, n);
        (void)ignored;
        n = 0;
        for (const char *c = opening; *c; c++) line[n++] = *c;
        for (const char *c = path; path != NULL && *c && n < sizeof(line) - 1; c++) line[n++] = *c;
    }
#endif
    line[n++] = '\n';
    ssize_t ignored = write(2, line, n);
    (void)ignored;
    _exit(cseccomp_report_status);
}

/// Makes a blocked system call (SCMP_ACT_TRAP) print what it was and end the process with
/// `status`, instead of a bare "Bad system call".
static inline int cseccomp_install_reporter(const char *prefix, int status) {
    strncpy(cseccomp_report_prefix, prefix, sizeof(cseccomp_report_prefix) - 1);
    cseccomp_report_status = status;
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_sigaction = cseccomp_on_sigsys;
    action.sa_flags = SA_SIGINFO;
    sigemptyset(&action.sa_mask);
    return sigaction(SIGSYS, &action, NULL);
}

/// prctl(PR_SET_NO_NEW_PRIVS, 1): prctl is variadic, which Swift cannot call.
static inline int cseccomp_set_no_new_privs(void) { return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); }

/// prctl(PR_GET_NO_NEW_PRIVS).
static inline int cseccomp_get_no_new_privs(void) { return prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0); }

/// Clears the effective, permitted and inheritable capability sets of the calling thread
/// (capset(2); glibc has no wrapper). Other threads must do the same, or be started after.
static inline int cseccomp_clear_capabilities(void) {
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof(data));
    return (int)syscall(SYS_capset, &header, data);
}

/// Reads the effective capability set of the calling thread (low and high words).
static inline int cseccomp_effective_capabilities(uint64_t *effective) {
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof(data));
    int result = (int)syscall(SYS_capget, &header, data);
    *effective = (uint64_t)data[0].effective | ((uint64_t)data[1].effective << 32);
    return result;
}

#endif
