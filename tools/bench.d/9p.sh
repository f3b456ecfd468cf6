#!/bin/bash
# Inside the testbed (see tools/bench-9p): seneschal's server over vsock in a vmm guest vs QEMU's
# virtio-9p. The same workload script runs in both guests, on the same kernel: through maitred in
# the vmm guest, from a small initramfs's init in the QEMU guest (which needs no agent: its
# results come back on the serial console).
set -uo pipefail
source "$(dirname "$0")/lib.sh"
runs=${1:-3}
mib=${2:-1024}
work=$(mktemp -d)
image=/var/lib/vmtools/images/default
seneschal() { busctl --system call org.vmtools.Seneschal /org/vmtools/Seneschal org.vmtools.Seneschal "$@"; }
share=$work/share
mkdir -p "$share/many" && (cd "$share/many" && seq 10000 | xargs touch)

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) exit; if (NR % 2) print v[(NR + 1) / 2]; else print int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

# The workload in the guest, timed there: write, read (MiB/s), find + stat (ms) in DIR.
cat >"$share/workload.sh" <<'SH'
#!/bin/sh
dir=$1 mib=$2
now() { awk '{ print int($1 * 1000) }' /proc/uptime; }  # ms; busybox date has no %N
t0=$(now); dd if=/dev/zero of=$dir/big bs=1048576 count=$mib conv=fsync 2>/dev/null; t1=$(now)
echo 3 >/proc/sys/vm/drop_caches
t2=$(now); dd if=$dir/big of=/dev/null bs=1048576 2>/dev/null; t3=$(now)
t4=$(now); find $dir/many -type f | xargs stat -c %s >/dev/null; t5=$(now)
rm -f $dir/big
echo "$((mib * 1000 / (t1 - t0 + 1))) $((mib * 1000 / (t3 - t2 + 1))) $((t5 - t4))"
SH
chmod +x "$share/workload.sh"

# run_vmm: boots the default image in vmm with seneschal's server mounted at /mnt/shared (as
# concierge sets it up), runs the workload $runs times through maitred, one line per run. A
# guest that dies (the nested testbed's triple faults, about one boot in ten) is booted again,
# three boots at most; the runs it finished count.
run_vmm() {
  local done=0 boot
  for boot in 1 2 3; do
    [ "$done" -lt "$runs" ] || break
    vmm_boot $((runs - done)) >"$work/vmm.boot"
    cat "$work/vmm.boot"
    done=$((done + $(wc -l <"$work/vmm.boot")))
  done
}

# vmm_boot N: one vmm guest, up to N runs of the workload.
vmm_boot() {
  local n=$1 sock=$work/vmm.sock dir=/mnt/shared/bench handle ready vm r line
  rm -f "$sock"*
  handle=$(seneschal StartServer 'a{sv}' 1 socket s "${sock}_16384" | cut -d' ' -f2)
  seneschal SharePath 'usa{sv}' "$handle" "$share" 2 writable b true name s bench >/dev/null
  vmtoolsctl guest ready --vsock "$sock" --timeout 300 >/dev/null & ready=$!
  sleep 0.5
  vmm run --kernel $image/vmlinuz --initrd $image/initrd.img --mem 512 --cpus 2 --no-console-input \
    --params quiet --cid 3 --vsock "$sock" --serial "file=$work/vmm-serial.log" </dev/null >"$work/vmm.log" 2>&1 &
  vm=$!
  if wait "$ready" && vmtoolsctl guest mount-9p --vsock "$sock" 16384 /mnt/shared; then
    for r in $(seq "$n"); do
      line=$(timeout 900 vmtoolsctl exec --vsock "$sock" -- "$dir/workload.sh" "$dir" "$mib") && [ -n "$line" ] || {
        echo "bench: a vmm run failed" >&2
        break
      }
      echo "$line"
    done
  else
    echo "bench: the vmm guest did not come up or mount" >&2
  fi
  kill -0 "$vm" 2>/dev/null || { echo "bench: the vmm guest ended early:" >&2; tail -n 3 "$work/vmm.log" >&2; }
  timeout 60 vmtoolsctl guest shutdown --vsock "$sock" >/dev/null 2>&1
  wait_exit "$vm" 60 >/dev/null
  seneschal StopServer u "$handle" >/dev/null
}

# run_qemu: boots the same kernel in QEMU (KVM) with -virtfs on the share and an initramfs whose
# init mounts it like maitred does (cache=none, msize 256 KiB) and runs the workload $runs times.
run_qemu() {
  cat >"$work/qemu-init" <<SH
#!/bin/sh
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in virtio_pci 9pnet_virtio 9p; do modprobe \$m; done
mkdir -p /mnt/shared
if mount -t 9p share /mnt/shared -o trans=virtio,version=9p2000.L,cache=none,access=any,msize=262144; then
  for r in \$(seq $runs); do echo "BENCH \$(/mnt/shared/workload.sh /mnt/shared $mib)"; done
else
  echo "BENCH-FAILED: mount"
fi
poweroff -f
SH
  make_initramfs "$work/qemu-initrd.gz" "$work/qemu-init" virtio_pci 9pnet_virtio 9p || echo "bench: make_initramfs failed" >&2
  ls -la "$work/qemu-initrd.gz" >&2
  timeout $((runs * 900 + 120)) qemu-system-x86_64 -M q35 -enable-kvm -cpu host -m 512 -smp 2 -nodefaults \
    -no-user-config -display none -no-reboot -serial "file:$work/qemu-serial.log" \
    -kernel $image/vmlinuz -initrd "$work/qemu-initrd.gz" -append "console=ttyS0 quiet panic=-1" \
    -virtfs local,path="$share",mount_tag=share,security_model=passthrough,id=fs0 </dev/null >"$work/qemu.log" 2>&1
  tr -d '\r' <"$work/qemu-serial.log" | sed -n 's/^BENCH //p'
  grep -q '^BENCH [0-9]' "$work/qemu-serial.log" || { echo "bench: the QEMU guest gave no results:" >&2; tail -n 8 "$work/qemu.log" "$work/qemu-serial.log" >&2; }
}

echo "bench: 9P, $mib MiB sequential write (fsync) and read, find + stat of 10 000 files; $runs runs each; 2 vCPUs, 512 MiB guests"
kinds=${3:-vmm qemu}
for kind in $kinds; do
  "run_$kind" | while read -r w r f; do
    echo "$w $r $f" >>"$work/$kind.runs"
    echo "  $kind: write $w MiB/s, read $r MiB/s, find+stat $f ms"
  done
done
printf '\n%-40s %14s %14s %16s\n' "" "write MiB/s" "read MiB/s" "find+stat 10k"
for kind in $kinds; do
  case $kind in vmm) label="seneschal over vsock (vmm, trans=fd)" ;; *) label="QEMU -virtfs (virtio-9p)" ;; esac
  f=$work/$kind.runs
  [ -s "$f" ] || { printf '%-40s %14s\n' "$label" "failed"; continue; }
  printf '%-40s %14s %14s %13s ms\n' "$label" "$(cut -d' ' -f1 "$f" | median)" "$(cut -d' ' -f2 "$f" | median)" "$(cut -d' ' -f3 "$f" | median)"
done
rm -rf "$work"
