#include "SandboxProbe.h"

#include "../../Core/CSeccomp/shim.h"
#include <sys/wait.h>

int sandbox_probe(void *filter, long number, unsigned long arg0, unsigned long arg1, unsigned long arg2,
                  int report_status) {
    pid_t child = fork();
    if (child < 0) return -1;
    if (child == 0) {
        // Only async-signal-safe work here: the parent (a test runner) has other threads.
        if (report_status > 0 && cseccomp_install_reporter("probe", report_status) != 0) _exit(120);
        if (seccomp_load((scmp_filter_ctx)filter) != 0) _exit(121);
        long result = syscall(number, arg0, arg1, arg2);
        _exit(result < 0 ? errno : 0);
    }
    int status = 0;
    while (waitpid(child, &status, 0) < 0) {
        if (errno != EINTR) return -1;
    }
    return status;
}
