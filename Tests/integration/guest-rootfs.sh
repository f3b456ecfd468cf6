#!/bin/bash
# testbed-disk: rootfs
# A guest whose / is a Debian root disk (build-guest-image --rootfs, the testbed's /dev/vda):
# maitred, PID 1 from the default image's initramfs, mounts the disk given by `maitred.root=`
# and switches to it, so processes and the shell run Debian's userland; a root disk that is
# missing leaves the guest on its initramfs, still reachable, with the reason on the console.
source "$(dirname "$0")/lib.sh"
image=/var/lib/vmtools/images/default
work=$(mktemp -d)
disk=/dev/vda

check "the testbed has the Debian root disk as $disk" bash -c "[ -b $disk ] && blkid -o value -s TYPE $disk | grep -qx ext4"

boot() {  # NAME CID PARAMS [vmm args...]: boots the default image, waits for VmReady
  local name=$1 cid=$2 params=$3; shift 3
  vmtoolsctl guest ready --vsock "$work/$name.sock" --timeout 240 >"$work/$name.ready" 2>&1 &
  local ready=$!
  sleep 0.5
  vmm run --kernel "$image/vmlinuz" --initrd "$image/initrd.img" --no-console-input --params "quiet $params" \
    --mem 512 --cpus 2 --cid "$cid" --vsock "$work/$name.sock" --serial "file=$work/$name.serial" "$@" \
    </dev/null >"$work/$name.vmm" 2>&1 &
  echo $! >"$work/$name.pid"
  wait "$ready"
}

boot debian 3 "maitred.root=$disk ro" --disk "$disk"
ready=$?
x() { timeout 60 vmtoolsctl exec --vsock "$work/debian.sock" "$@"; }
export -f x; export work
check "a guest with maitred.root=$disk reaches VmReady" bash -c "[ $ready -eq 0 ]"
check "its / is the disk, read-only as asked" bash -c "x -- cat /proc/mounts | tee $work/mounts | grep -q '^$disk / ext4 ro'"
check "it runs Debian's userland: /etc/debian_version, dpkg, apt" \
  bash -c "v=\$(x -- cat /etc/debian_version); echo \"debian \$v\"; [[ \$v == 12* ]] && x -- dpkg-query -W -f '\${Status}' apt | grep -q 'install ok installed' && x -- apt-get --version | head -n 1"
check "the kernel file systems moved along (proc, sys, dev, devpts, run, tmp, cgroup2)" \
  bash -c "for t in ' /proc proc' ' /sys sysfs' ' /dev devtmpfs' ' /dev/pts devpts' ' /run tmpfs' ' /tmp tmpfs' ' /sys/fs/cgroup cgroup2'; do grep -q \"\$t \" $work/mounts || { echo missing \$t; exit 1; }; done"
check "maitred is still PID 1, running from the initramfs it came from" bash -c "x -- cat /proc/1/comm | grep -qx init"
check "the shell is Debian's /bin/sh and /tmp is writable" \
  bash -c "[ \"\$(timeout 60 vmtoolsctl shell --vsock $work/debian.sock --no-tty -- sh -c 'readlink -f /bin/sh; echo x >/tmp/f && cat /tmp/f')\" = \"\$(printf '/usr/bin/dash\nx')\" ]"
check "the guest's console says which root it uses" bash -c "tr -d '\r' <$work/debian.serial | grep -q 'maitred: root is $disk (ext4, read-only)'"
check "Shutdown powers the Debian guest off and vmm exits 0" \
  bash -c "timeout 60 vmtoolsctl guest shutdown --vsock $work/debian.sock; p=\$(cat $work/debian.pid); for i in \$(seq 60); do kill -0 \$p 2>/dev/null || break; sleep 1; done; ! kill -0 \$p 2>/dev/null"

boot missing 4 "maitred.root=/dev/vdb"
ready=$?
check "a root disk that is not there: the guest stays on its initramfs and still serves" \
  bash -c "[ $ready -eq 0 ] && [ \"\$(timeout 60 vmtoolsctl exec --vsock $work/missing.sock -- readlink /proc/1/exe)\" = /init ]"
check "... and the console names the missing disk" \
  bash -c "tr -d '\r' <$work/missing.serial | grep -q 'cannot use /dev/vdb as root, staying on the initramfs: /dev/vdb did not appear'"
timeout 60 vmtoolsctl guest shutdown --vsock "$work/missing.sock" >/dev/null 2>&1

if [ "$failed" -gt 0 ]; then
  for n in debian missing; do
    echo "--- $n: guest console (tail)"; tr -d '\r' <"$work/$n.serial" | tail -n 20
    echo "--- $n: vmm log (tail)"; tail -n 5 "$work/$n.vmm"
  done
fi
for n in debian missing; do kill "$(cat "$work/$n.pid")" 2>/dev/null; done
rm -rf "$work"
finish
