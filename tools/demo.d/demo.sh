#!/bin/bash
# What `tools/demo` shows, run inside the testbed (a Debian host with systemd and real KVM):
# vmtools installed as on a real host; `vmtoolsctl start` asks concierge (D-Bus activation starts
# its systemd unit) for a VM with the default guest image (the stock Debian kernel, maitred as
# PID 1), 2 vCPUs and a disk; then the VM is used from the host: a command, an interactive shell on
# a PTY, its network, a container with an application (cicerone, garcon); and stopped cleanly.
set -e
source "$(dirname "$0")/lib.sh"
image=/var/lib/vmtools/images/default
echo "== host: $(uname -sr), PID 1 is $(cat /proc/1/comm), multi-user.target $(systemctl is-active multi-user.target)"
echo "== vmtools installed: $(command -v vmm) $(command -v vmtoolsctl)"
vmm check | sed 's/^/   /'
echo "== default guest image: kernel $(cat $image/kernel-version), initramfs $(du -h $image/initrd.img | cut -f1) with maitred as /init"

echo "== vmtoolsctl disk create data --size 1G"
vmtoolsctl disk create data --size 1G | sed 's/^/   /'
echo "== vmtoolsctl start demo --cpus 2 --mem 512 --writable-disk data"
start=$(date +%s%N)
vmtoolsctl start demo --cpus 2 --mem 512 --writable-disk data | sed 's/^/   /'
echo "   (configured and ready $(( ($(date +%s%N) - start) / 1000000 )) ms after the call; vmtools-concierge.service $(systemctl is-active vmtools-concierge))"
echo "== vmtoolsctl list"
vmtoolsctl list | sed 's/^/   /'

echo "== vmtoolsctl exec demo -- uname -a"
vmtoolsctl exec demo -- uname -a | sed 's/^/   /'
echo "== vmtoolsctl exec demo -- sh -c '...'   (what the guest sees)"
vmtoolsctl exec demo -- sh -c 'echo "$(hostname): $(nproc) vCPUs, $(awk "/MemTotal/ {print \$2}" /proc/meminfo) kB RAM, /dev/vda $(($(cat /sys/block/vda/size) / 2048)) MiB"; echo "eth0: $(ip -4 -o addr show eth0 | awk "{print \$4}"), default via $(ip route | awk "/default/ {print \$3}")"; echo "PID 1: $(cat /proc/1/comm); modules: $(wc -l </proc/modules)"' | sed 's/^/   /'
host=$(vmtoolsctl info demo | awk '$1 == "host_ipv4" {print $2}')
echo "== vmtoolsctl exec demo -- ping -c 2 $host   (the host, over the VM's TAP)"
vmtoolsctl exec demo -- ping -c 2 -W 5 "$host" | grep -E "packets|round-trip" | sed 's/^/   /'
echo "== vmtoolsctl shell demo   (a PTY session; the input below is typed into it)"
printf 'tty; echo $((6 * 7)); exit 0\n' | script -qec "vmtoolsctl shell demo" /dev/null | tr -d '\r' | sed 's/^/   /'
echo "== vmtoolsctl container create demo penguin; vmtoolsctl container start demo penguin"
vmtoolsctl container create demo penguin
vmtoolsctl container start demo penguin | sed 's/^/   /'
echo "== vmtoolsctl app launch demo penguin -- /bin/sh -c '...'   (an application installed in the container)"
vmtoolsctl app launch demo penguin -- /bin/sh -c 'mkdir -p /usr/share/applications && printf "[Desktop Entry]\nType=Application\nName=Clock\nExec=/bin/date\n" >/usr/share/applications/clock.desktop' | sed 's/^/   /'
sleep 2
echo "== vmtoolsctl app list demo penguin"
vmtoolsctl app list demo penguin | sed 's/^/   /'
echo "== vmtoolsctl container list demo"
vmtoolsctl container list demo | sed 's/^/   /'
echo "== vmtoolsctl stop demo"
vmtoolsctl stop demo
echo "== concierge's journal:"
journalctl -u vmtools-concierge --no-pager -o cat | grep -E "VM demo|serving" | sed 's/^/   /'
vmtoolsctl list | sed 's/^/   /'
vmtoolsctl disk destroy data
