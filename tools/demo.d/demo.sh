#!/bin/bash
# What `tools/demo` shows, run inside the testbed (a Debian host with systemd and real KVM):
# vmtools installed as on a real host, and its VMM booting the stock Debian kernel in a VM with
# 2 vCPUs, a virtio disk and virtio-rng, where a small init shows what the guest sees.
set -e
source "$(dirname "$0")/lib.sh"
echo "== host: $(uname -sr), PID 1 is $(cat /proc/1/comm), multi-user.target $(systemctl is-active multi-user.target)"
echo "== vmtools installed: $(command -v vmm); guest kernel: $GUEST_KERNEL"
vmm check | sed 's/^/   /'

work=$(mktemp -d)
cat >"$work/init" <<'INIT'
#!/bin/sh
mount -t proc proc /proc; mount -t devtmpfs dev /dev; mount -t sysfs sys /sys
printf 'A' | dd of=/dev/port bs=1 seek=128 count=1 2>/dev/null   # boot marker for vmm
for m in virtio_pci virtio_blk virtio_rng; do modprobe $m; done
sleep 1
echo "   guest: $(uname -sr) on $(nproc) vCPUs, $(awk '/MemTotal/ {print $2 " kB"}' /proc/meminfo) RAM"
echo "   guest: PCI devices: $(ls /sys/bus/pci/devices | tr '\n' ' ')"
echo "   guest: /dev/vda says: $(head -c 30 /dev/vda)"
echo "   guest: 16 bytes from virtio-rng: $(head -c 16 /dev/hwrng | od -An -tx1 | tr -d ' \n')"
echo "   guest: rebooting (which ends the VM)"
reboot -f
INIT
make_initramfs "$work/initrd.gz" "$work/init" virtio_pci virtio_blk virtio_rng
printf 'hello from a host disk image' >"$work/disk.img"
truncate -s 1M "$work/disk.img"
echo "== vmm run --cpus 2 --mem 512 --disk disk.img (serial console below)"
vmm run --kernel "$GUEST_KERNEL" --initrd "$work/initrd.gz" --cpus 2 --mem 512 --disk "$work/disk.img" \
  --params quiet --no-console-input </dev/null 2>&1 | tr -d '\r'
echo "== vmm exited with status ${PIPESTATUS[0]}"
