#!/bin/bash
# What `tools/demo` shows, run inside the testbed: a real systemd host with the project installed
# and a working KVM, and the project's VMM running a guest on it.
set -e
echo "== host: $(uname -sr), PID 1 is $(cat /proc/1/comm), multi-user.target $(systemctl is-active multi-user.target)"
echo "== system bus names:"
busctl list --no-pager --no-legend | awk '{print "   " $1}' | grep -v '^   :' | head -n 8
echo "== KVM: $(ls -l /dev/kvm)"
echo "== vmtools installed: $(command -v vmm), images: $(ls /var/lib/vmtools/images/default)"
echo "== vmm check:"
vmm check | sed 's/^/   /'
