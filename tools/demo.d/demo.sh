#!/bin/bash
# What `tools/demo` shows, run inside the testbed (a Debian host with systemd and real KVM):
# vmtools installed as on a real host; the default guest image (the stock Debian kernel, maitred
# as PID 1) booted by vmm with 2 vCPUs, a virtio disk and vsock; then used from the host with
# vmtoolsctl: a command, an interactive shell on a PTY, and a clean shutdown.
set -e
source "$(dirname "$0")/lib.sh"
image=/var/lib/vmtools/images/default
echo "== host: $(uname -sr), PID 1 is $(cat /proc/1/comm), multi-user.target $(systemctl is-active multi-user.target)"
echo "== vmtools installed: $(command -v vmm) $(command -v vmtoolsctl)"
vmm check | sed 's/^/   /'
echo "== default guest image: kernel $(cat $image/kernel-version), initramfs $(du -h $image/initrd.img | cut -f1) with maitred as /init"

work=$(mktemp -d)
sock=$work/vsock.sock
printf 'hello from a host disk image' >"$work/disk.img"
truncate -s 1M "$work/disk.img"
vmtoolsctl guest ready --vsock "$sock" --timeout 300 | sed 's/^/   /' &
ready=$!
echo "== vmm run --cpus 2 --mem 512 --disk disk.img --cid 3 --vsock $sock"
start=$(date +%s%N)
vmm run --kernel $image/vmlinuz --initrd $image/initrd.img --cpus 2 --mem 512 --disk "$work/disk.img" \
  --cid 3 --vsock "$sock" --params "quiet maitred.hostname=demo" --serial "file=$work/console.log" \
  --no-console-input </dev/null >"$work/vmm.log" 2>&1 &
vmm=$!
wait $ready
echo "   (VmReady $(( ($(date +%s%N) - start) / 1000000 )) ms after vmm started)"

echo "== vmtoolsctl exec --vsock $sock -- uname -a"
vmtoolsctl exec --vsock "$sock" -- uname -a | sed 's/^/   /'
echo "== vmtoolsctl exec -- sh -c '...'   (what the guest sees)"
vmtoolsctl exec --vsock "$sock" -- sh -c 'echo "$(hostname): $(nproc) vCPUs, $(awk "/MemTotal/ {print \$2}" /proc/meminfo) kB RAM"; echo "/dev/vda says: $(head -c 28 /dev/vda)"; echo "PID 1: $(cat /proc/1/comm); modules: $(wc -l </proc/modules)"' | sed 's/^/   /'
echo "== vmtoolsctl shell   (a PTY session; the input below is typed into it)"
printf 'tty; echo $((6 * 7)); exit 0\n' | script -qec "vmtoolsctl shell --vsock $sock" /dev/null | tr -d '\r' | sed 's/^/   /'
echo "== vmtoolsctl guest shutdown"
vmtoolsctl guest shutdown --vsock "$sock"
wait $vmm && status=0 || status=$?
echo "== vmm exited with status $status; the guest's last words:"
tr -d '\r' <"$work/console.log" | grep maitred | tail -n 3 | sed 's/^/   /'
exit $status
