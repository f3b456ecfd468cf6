// Test support: runs one system call in a forked child under a seccomp filter, so that a test
// can load filters (which can never be removed) without sandboxing the test runner itself.
#ifndef SANDBOX_PROBE_H
#define SANDBOX_PROBE_H

/// Forks; the child optionally installs the SIGSYS reporter (exiting `report_status`), loads
/// `filter` (a libseccomp scmp_filter_ctx), makes system call `number` with arguments
/// `arg0`..`arg2`, and exits 0 on success or with the call's errno. Returns the child's raw
/// wait status, or -1 if fork or wait failed.
int sandbox_probe(void *filter, long number, unsigned long arg0, unsigned long arg1, unsigned long arg2,
                  int report_status);

#endif
