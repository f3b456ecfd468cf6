#!/usr/bin/env bash
# Builds the testbed's base layer into DIR: a Debian bookworm rootfs with systemd as init and the
# stock Debian kernel's modules, packed as a gzip cpio (base.cpio.gz), plus that kernel (vmlinuz).
# The same kernel boots the testbed and, nested inside it, the project's guests.
#
# Usage: base.sh DIR KERNEL_PACKAGE MIRROR [EXTRA_PACKAGES]
# Sourced inputs are hashed by tools/testbed: edit this file and the cache rebuilds.
# EXTRA_PACKAGES (comma-separated) makes a variant, e.g. with QEMU for the benchmarks.
set -euo pipefail

out=$1 kernel_pkg=$2 mirror=$3 extra=${4:-}
work=$(mktemp -d "${out%/}.tmp.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Packages of the testbed rootfs. busybox-static, cpio and e2fsprogs let tests build guest
# initramfs images and disks inside the testbed (xz unpacks the ELF vmlinux inside the bzImage for
# PVH boots); socat talks to Unix sockets from shell tests.
include=systemd,systemd-sysv,dbus,iproute2,kmod,udev,nftables,procps,libstdc++6,busybox-static,cpio,gzip,xz-utils,e2fsprogs,socat,util-linux,attr
[ -z "$extra" ] || include=$include,$extra

echo "testbed: debootstrap bookworm ($mirror)"
mkdir -p "$work/rootfs" "$work/debs" "$(dirname "$out")/debs"
debootstrap --variant=minbase --include="$include" --cache-dir="$(dirname "$out")/debs" \
  bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -n 30 "$work/debootstrap.log" >&2
  exit 1
}

echo "testbed: kernel $kernel_pkg"
(cd "$work/debs" && apt-get download -q "$kernel_pkg" >/dev/null 2>&1)
dpkg-deb -x "$work"/debs/"$kernel_pkg"_*.deb "$work/kernel"
kver=${kernel_pkg#linux-image-}
cp "$work/kernel/boot/vmlinuz-$kver" "$work/vmlinuz"

# Modules: everything except hardware the testbed never has (graphics, sound, radios, NICs
# other than virtio). Halves the archive and the boot time under TCG.
mods="$work/kernel/lib/modules/$kver/kernel"
rm -rf "$mods"/drivers/{gpu,media,infiniband,staging,bluetooth,iio,isdn,net/wireless,net/ethernet,net/can,hid,input/touchscreen,usb,mmc,scsi/fcoe,scsi/qla2xxx,scsi/lpfc,scsi/mpt3sas} \
  "$mods"/sound "$mods"/net/{bluetooth,wireless,mac80211,can}
mkdir -p "$work/rootfs/lib/modules"
cp -a "$work/kernel/lib/modules/$kver" "$work/rootfs/lib/modules/"
depmod -b "$work/rootfs" "$kver"

echo "testbed: configuring rootfs"
r=$work/rootfs
echo testbed >"$r/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 testbed\n' >"$r/etc/hosts"
: >"$r/etc/fstab"
sed -i 's/^root:[^:]*:/root::/' "$r/etc/shadow"
ln -sf /lib/systemd/systemd "$r/init"
ln -sf /lib/systemd/system/multi-user.target "$r/etc/systemd/system/default.target"
# Interactive shell (tools/testbed shell): a root login on the serial console, no password.
mkdir -p "$r/etc/systemd/system/serial-getty@ttyS0.service.d"
cat >"$r/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf" <<'UNIT'
[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin root --keep-baud 115200,57600,38400,9600 %I $TERM
UNIT
# Units that only slow a throw-away VM down.
for u in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer; do
  ln -sf /dev/null "$r/etc/systemd/system/$u"
done
rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/lib/apt/lists/* "$r"/usr/share/{doc,man,info,locale}/*

echo "testbed: packing base.cpio.gz"
(cd "$r" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -1 >"$work/base.cpio.gz")
echo "$kver" >"$work/kernel-version"

mkdir -p "$out"
mv "$work/vmlinuz" "$work/base.cpio.gz" "$work/kernel-version" "$out/"
# Guest side: the same kernel's modules, unpruned layout, for guest image builders.
mv "$work/kernel/lib/modules/$kver" "$out/modules"
du -sh "$out"/* | sed 's/^/testbed: /'
