#!/bin/bash
# maitred as PID 1 of the default guest image (tools/build-guest-image), reached from the host
# through vmm's vsock socket with vmtoolsctl: VmReady, LaunchProcess, the shell (pipes and a
# PTY), init duties (mounts, modules, hostname, reaping), SetTime, ConfigureNetwork on loopback,
# bad input that must leave the agent serving, and Shutdown ending vmm with status 0.
source "$(dirname "$0")/lib.sh"
image=/var/lib/vmtools/images/default
work=$(mktemp -d)
sock=$work/vsock.sock
kver=$(cat "$image/kernel-version" 2>/dev/null)

check "the default image has a kernel, an initramfs and its module list" \
  bash -c "test -s $image/vmlinuz && test -s $image/initrd.img && grep -q vmw_vsock_virtio_transport $image/modules.txt"

# The startup listener first: maitred calls it as soon as it serves.
vmtoolsctl guest ready --vsock "$sock" --timeout 240 >"$work/ready.txt" 2>&1 &
ready_pid=$!
sleep 0.5
started=$(date +%s%N)
vmm run --kernel "$image/vmlinuz" --initrd "$image/initrd.img" --no-console-input --params "quiet maitred.hostname=demo" \
  --mem 512 --cpus 2 --cid 3 --vsock "$sock" --vsock-listen "8888:$work/maitred.sock" --vsock-listen "9001:$work/shell.sock" \
  --socket "$work/ctl" --serial "file=$work/serial.log" </dev/null >"$work/vmm.log" 2>&1 &
vmm_pid=$!
wait "$ready_pid"
ready_status=$?
ready_ms=$(( ($(date +%s%N) - started) / 1000000 ))
cat "$work/ready.txt"
echo "       | VmReady $ready_ms ms after vmm started"
check "VmReady reaches the host's startup listener (<socket>_7777) with the kernel release" \
  bash -c "[ $ready_status -eq 0 ] && grep -q 'kernel $kver' $work/ready.txt"

x() { timeout 60 vmtoolsctl exec --vsock "$sock" "$@"; }
export -f x; export sock
check "LaunchProcess: uname -r in the guest is the image's kernel" bash -c "[ \"\$(x -- uname -r)\" = '$kver' ]"
check "GetKernelVersion agrees" bash -c "timeout 60 vmtoolsctl guest kernel-version --vsock $sock | grep -q ' $kver '"
check "maitred is PID 1" bash -c "[ \"\$(x -- readlink /proc/1/exe)\" = /init ]"
check "an exit status comes back as vmtoolsctl's own" bash -c "x -- sh -c 'echo out; echo err >&2; exit 3' >$work/o 2>$work/e; [ \$? -eq 3 ] && grep -qx out $work/o && grep -qx err $work/e"
check "init mounted proc, sys, devtmpfs, devpts, run, tmp and cgroup2" \
  bash -c "m=\$(x -- cat /proc/mounts); for t in proc sysfs devtmpfs devpts cgroup2; do echo \"\$m\" | grep -q \" \$t \" || { echo missing \$t; exit 1; }; done; echo \"\$m\" | grep -q ' /run tmpfs' && echo \"\$m\" | grep -q ' /tmp tmpfs'"
check "init loaded the image's modules (vsock, virtio-net, 9P over fd)" \
  bash -c "m=\$(x -- cat /proc/modules); for n in vmw_vsock_virtio_transport virtio_net 9pnet_fd 9p; do echo \"\$m\" | grep -q \"^\$n \" || { echo missing \$n; exit 1; }; done"
check "the hostname comes from maitred.hostname= on the kernel command line" bash -c "[ \"\$(x -- hostname)\" = demo ]"
check "orphans re-parented to PID 1 are reaped (no zombies)" \
  bash -c "x -- sh -c 'sleep 0.2 & sleep 0.2 & exit 0' && sleep 2 && stats=\$(x -- sh -c 'cat /proc/[0-9]*/stat 2>/dev/null; true') && z=\$(echo \"\$stats\" | awk '\$3 == \"Z\"') && echo \"[\$z]\" && [ -n \"\$stats\" ] && [ -z \"\$z\" ]"

check "shell: a command without a terminal" bash -c "[ \"\$(timeout 60 vmtoolsctl shell --vsock $sock --no-tty -- echo hi)\" = hi ]"
check "shell: an interactive session on a PTY runs typed commands and returns the status" \
  bash -c "printf 'echo \$((6*7))\ntty\nexit 3\n' | timeout 60 script -qec 'vmtoolsctl shell --vsock $sock' /dev/null >$work/pty.out; s=\$?; tr -d '\r' <$work/pty.out | tail -n 5; [ \$s -eq 3 ] && grep -q 42 $work/pty.out && grep -q /dev/pts/ $work/pty.out"

check "vmm's per-port listeners reach maitred and the shell with plain gRPC (no CONNECT bridge)" \
  bash -c "[ \"\$(timeout 60 vmtoolsctl exec --socket $work/maitred.sock -- echo direct)\" = direct ] && [ \"\$(timeout 60 vmtoolsctl shell --socket $work/shell.sock --no-tty -- echo direct-shell)\" = direct-shell ]"
check "SetTime sets the guest clock" bash -c "timeout 60 vmtoolsctl guest set-time --vsock $sock --seconds 1893456000 && [ \"\$(x -- date -u +%Y)\" = 2030 ]"
check "SetTime without a time copies the host's" bash -c "timeout 60 vmtoolsctl guest set-time --vsock $sock && g=\$(x -- date +%s); h=\$(date +%s); echo guest \$g host \$h; [ \$((h - g)) -lt 5 ] && [ \$((g - h)) -lt 5 ]"
check "ConfigureNetwork configures an interface (loopback; a TAP comes with virtio-net)" \
  bash -c "timeout 60 vmtoolsctl guest configure-network --vsock $sock --interface lo --address 127.0.0.1 --netmask 255.0.0.0 --dns 192.0.2.53 && x -- ping -c 1 -W 2 127.0.0.1 >/dev/null && x -- cat /etc/resolv.conf | grep -qx 'nameserver 192.0.2.53'"

check "bad input: a missing program is NOT_FOUND, named" bash -c "x -- no-such-program 2>&1 | grep -q 'no program named no-such-program'"
check "bad input: a Mount of a missing source names it" bash -c "timeout 60 vmtoolsctl guest mount --vsock $sock /dev/vdz /mnt/x --type ext4 --create-target 2>&1 | grep -q '/dev/vdz.*No such file'"
check "bad input: ConfigureNetwork of a missing interface is NOT_FOUND" bash -c "timeout 60 vmtoolsctl guest configure-network --vsock $sock --interface nosuch0 --address 10.0.0.2 --netmask 255.255.255.252 2>&1 | grep -q 'no network interface named nosuch0'"
check "bad input: a guest port with no listener is refused, not hung" bash -c "s=\$(date +%s); timeout 30 vmtoolsctl exec --vsock $sock --port 4444 -- true 2>&1 | grep -q 'refused vsock port 4444' && [ \$((\$(date +%s) - s)) -lt 15 ]"
check "maitred still serves after all that" bash -c "[ \"\$(x -- echo alive)\" = alive ]"
# Before Shutdown: what the VMM's devices looked like, should anything above have failed.
[ "$failed" -eq 0 ] || vmm status "$work/ctl" >"$work/status.json" 2>&1
check "maitred's log reaches the host on the serial console" bash -c "tr -d '\r' <$work/serial.log | grep -q 'maitred: loaded [0-9]* kernel modules'"

check "Shutdown powers the guest off and vmm exits 0" \
  bash -c "timeout 60 vmtoolsctl guest shutdown --vsock $sock; for i in \$(seq 60); do kill -0 $vmm_pid 2>/dev/null || break; sleep 1; done; ! kill -0 $vmm_pid 2>/dev/null"
kill "$vmm_pid" 2>/dev/null  # still running means Shutdown failed: end it rather than hang here
wait "$vmm_pid"
vmm_status=$?
check "vmm's exit status is 0 and the guest said why it powered off" \
  bash -c "[ $vmm_status -eq 0 ] && tr -d '\r' <$work/serial.log | grep -q 'powering off: the host asked for it'"
check "vmm removed its vsock sockets, per-port listeners included" bash -c "[ ! -e $sock ] && [ ! -e $work/maitred.sock ] && [ ! -e $work/shell.sock ]"
check "the image's PVH vmlinux boots to VmReady as well, and shuts down with status 0" \
  bash -c "vmtoolsctl guest ready --vsock $work/pvh.sock --timeout 240 & l=\$!; sleep 0.5; vmm run --kernel $image/vmlinux --initrd $image/initrd.img --no-console-input --params quiet --mem 512 --cid 4 --vsock $work/pvh.sock </dev/null >$work/pvh.log 2>&1 & v=\$!; wait \$l && timeout 60 vmtoolsctl guest shutdown --vsock $work/pvh.sock && wait \$v; s=\$?; grep -v '^\[' $work/pvh.log | head -n 3; [ \$s -eq 0 ] && grep -q 'PVH' $work/pvh.log"
if [ "$failed" -gt 0 ]; then
  echo "--- guest console (tail)"; tr -d '\r' <"$work/serial.log" | tail -n 30
  echo "--- vmm log (tail)"; grep -v '^\[' "$work/vmm.log" | tail -n 15
  echo "--- vmm status before Shutdown"; tr ',' '\n' <"$work/status.json" | grep -E 'vsock|needs_reset|avail|used|control|replies|state' | head -n 30
fi
kill "$vmm_pid" 2>/dev/null
rm -rf "$work"
finish
