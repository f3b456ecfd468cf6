#!/bin/bash
# Proves the testbed is what every other integration test assumes: systemd as PID 1, the system
# bus up, real KVM after modprobe kvm_amd (a vCPU runs a guest), TUN and modprobe working, and
# the project installed as tools/install installs it.
source "$(dirname "$0")/lib.sh"

check "systemd is PID 1" test "$(cat /proc/1/comm)" = systemd
# The test itself runs as a unit after multi-user.target, so the system still reads "starting":
# check the target and that no unit failed instead of is-system-running.
check "multi-user.target is active" systemctl is-active multi-user.target
check "no unit failed" bash -c 'failed=$(systemctl --failed --no-legend --plain); echo "$failed"; [ -z "$failed" ]'
check "system bus answers busctl list" bash -c 'busctl list --no-pager | grep -q org.freedesktop.systemd1'
check "kvm_amd is loaded" bash -c 'grep -q "^kvm_amd " /proc/modules'
check "/dev/kvm is a character device" test -c /dev/kvm
check "a KVM vCPU runs a tiny long-mode guest (vmm check)" vmm check
check "TUN: a tap device can be created" bash -c 'ip tuntap add mode tap vmtest0 && ip link set vmtest0 up && ip link del vmtest0'
check "modprobe loads vsock transport modules" bash -c 'modprobe vhost_vsock && test -c /dev/vhost-vsock'
check "vmm is installed on PATH" bash -c 'command -v vmm | grep -q /usr/local/bin/vmm'
check "guest kernel installed for the default image" test -s /var/lib/vmtools/images/default/vmlinuz
finish
