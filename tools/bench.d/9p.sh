#!/bin/bash
# Inside the testbed (see tools/bench-9p): seneschal's server over vsock in a vmm guest vs QEMU's
# virtio-9p. The same workload script runs in both guests, on the same kernel: through maitred in
# the vmm guest, from a small initramfs's init in the QEMU guest (which needs no agent: its
# results come back on the serial console).
set -uo pipefail
source "$(dirname "$0")/lib.sh"
runs=${1:-3}
mib=${2:-1024}
cpus=${4:-2}
work=$(mktemp -d)
image=/var/lib/vmtools/images/default
seneschal() { busctl --system call org.vmtools.Seneschal /org/vmtools/Seneschal org.vmtools.Seneschal "$@"; }
share=$work/share
mkdir -p "$share/many" && (cd "$share/many" && seq 10000 | xargs touch)

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) exit; if (NR % 2) print v[(NR + 1) / 2]; else print int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

# The workload in the guest, one phase at a time, timed there: "write" and "read" print MiB/s,
# "find" prints the ms that find + stat of 10 000 files took. The file written stays in the
# share until "read" has read it, so a guest booted again can go on where a dead one stopped.
cat >"$share/workload.sh" <<'SH'
#!/bin/sh
dir=$1 mib=$2 phase=$3
now() { awk '{ print int($1 * 1000) }' /proc/uptime; }  # ms; busybox date has no %N
t0=$(now)
case $phase in
  write) dd if=/dev/zero of=$dir/big bs=1048576 count=$mib conv=fsync 2>/dev/null || exit 1 ;;
  read) echo 3 >/proc/sys/vm/drop_caches; t0=$(now); dd if=$dir/big of=/dev/null bs=1048576 2>/dev/null || exit 1; rm -f $dir/big ;;
  find) find $dir/many -type f | xargs stat -c %s >/dev/null || exit 1 ;;
esac
t1=$(now)
case $phase in find) echo "$((t1 - t0))" ;; *) echo "$((mib * 1000 / (t1 - t0 + 1)))" ;; esac
SH
chmod +x "$share/workload.sh"

# Phases of all runs, in order; each result line is "PHASE VALUE".
phases() { for r in $(seq "$runs"); do printf '%s\n' write read find; done; }

# run_vmm: the default image in vmm with seneschal's server mounted at /mnt/shared (as concierge
# sets it up); the phases go through maitred. A guest that dies (the nested testbed's emulated
# SVM, see tools/test) is booted again and the phase it was in starts over, six boots at most.
run_vmm() {
  local boot=0 sock=$work/vmm.sock dir=/mnt/shared/bench handle ready vm phase line
  phases >"$work/todo"
  while [ -s "$work/todo" ] && [ "$boot" -lt 6 ]; do
    boot=$((boot + 1))
    rm -f "$sock"*
    handle=$(seneschal StartServer 'a{sv}' 1 socket s "${sock}_16384" | cut -d' ' -f2)
    seneschal SharePath 'usa{sv}' "$handle" "$share" 2 writable b true name s bench >/dev/null
    vmtoolsctl guest ready --vsock "$sock" --timeout 300 >/dev/null & ready=$!
    sleep 0.5
    vmm run --kernel $image/vmlinuz --initrd $image/initrd.img --mem 512 --cpus "$cpus" --no-console-input \
      --params quiet --cid 3 --vsock "$sock" --serial "file=$work/vmm-serial.log" </dev/null >"$work/vmm.log" 2>&1 &
    vm=$!
    if wait "$ready" && vmtoolsctl guest mount-9p --vsock "$sock" 16384 /mnt/shared; then
      while read -r phase <&3; do
        # A stalled guest is given up on after 5 minutes (a phase takes under three).
        line=$(timeout 300 vmtoolsctl exec --vsock "$sock" -- "$dir/workload.sh" "$dir" "$mib" "$phase") && [ -n "$line" ] || break
        echo "$phase $line"
        sed -i 1d "$work/todo"
      done 3<"$work/todo"
    else
      echo "bench: the vmm guest did not come up or mount" >&2
    fi
    if [ -s "$work/todo" ]; then
      echo "bench: vmm boot $boot ended in phase $(head -n 1 "$work/todo"):" >&2
      kill -0 "$vm" 2>/dev/null && echo "  the guest stopped answering" >&2 || grep -m 1 'error' "$work/vmm.log" | sed 's/^/  /' >&2
      echo death >>"$work/vmm.deaths"
    fi
    timeout 60 vmtoolsctl guest shutdown --vsock "$sock" >/dev/null 2>&1
    wait_exit "$vm" 60 >/dev/null || kill -9 "$vm" 2>/dev/null
    seneschal StopServer u "$handle" >/dev/null
  done
}

# run_qemu: boots the same kernel in QEMU (KVM) with -virtfs on the share and an initramfs whose
# init mounts it like maitred does (cache=none, msize 256 KiB) and runs the same phases.
run_qemu() {
  cat >"$work/qemu-init" <<SH
#!/bin/sh
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in virtio_pci 9pnet_virtio 9p; do modprobe \$m; done
mkdir -p /mnt/shared
if mount -t 9p share /mnt/shared -o trans=virtio,version=9p2000.L,cache=none,access=any,msize=262144; then
  for phase in $(phases | tr '\n' ' '); do echo "BENCH \$phase \$(/mnt/shared/workload.sh /mnt/shared $mib \$phase)"; done
else
  echo "BENCH-FAILED: mount"
fi
poweroff -f
SH
  make_initramfs "$work/qemu-initrd.gz" "$work/qemu-init" virtio_pci 9pnet_virtio 9p || echo "bench: make_initramfs failed" >&2
  timeout $((runs * 900 + 120)) qemu-system-x86_64 -M q35 -enable-kvm -cpu host -m 512 -smp "$cpus" -nodefaults \
    -no-user-config -display none -no-reboot -serial "file:$work/qemu-serial.log" \
    -kernel $image/vmlinuz -initrd "$work/qemu-initrd.gz" -append "console=ttyS0 quiet panic=-1" \
    -virtfs local,path="$share",mount_tag=share,security_model=passthrough,id=fs0 </dev/null >"$work/qemu.log" 2>&1
  tr -d '\r' <"$work/qemu-serial.log" | sed -n 's/^BENCH \([a-z]* [0-9][0-9]*\)$/\1/p'
  grep -q '^BENCH [a-z]* [0-9]' "$work/qemu-serial.log" || { echo "bench: the QEMU guest gave no results:" >&2; tail -n 8 "$work/qemu.log" "$work/qemu-serial.log" >&2; }
}

echo "bench: 9P, $mib MiB sequential write (fsync) and read, find + stat of 10 000 files; $runs runs each; $cpus vCPUs, 512 MiB guests"
kinds=${3:-vmm qemu}
for kind in $kinds; do
  "run_$kind" | while read -r phase value; do
    echo "$phase $value" >>"$work/$kind.runs"
    echo "  $kind: $phase $value"
  done
done
printf '\n%-40s %12s %12s %16s %7s\n' "" "write MiB/s" "read MiB/s" "find+stat 10k" "deaths"
for kind in $kinds; do
  case $kind in vmm) label="seneschal over vsock (vmm, trans=fd)" ;; *) label="QEMU -virtfs (virtio-9p)" ;; esac
  f=$work/$kind.runs
  [ -s "$f" ] || { printf '%-40s %12s\n' "$label" "failed"; continue; }
  printf '%-40s %12s %12s %13s ms %7s\n' "$label" "$(awk '$1 == "write" { print $2 }' "$f" | median)" \
    "$(awk '$1 == "read" { print $2 }' "$f" | median)" "$(awk '$1 == "find" { print $2 }' "$f" | median)" \
    "$(cat "$work/$kind.deaths" 2>/dev/null | wc -l)"
done
rm -rf "$work"
