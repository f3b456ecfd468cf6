#!/bin/bash
# Inside the testbed (see tools/bench-9p): seneschal's server over vsock in a vmm guest (and in a
# QEMU guest with vhost-vsock) vs QEMU's virtio-9p. The same workload script runs in every guest,
# on the same kernel: through maitred in the default image, from a small initramfs's init in the
# virtio-9p guest (which needs no agent: its results come back on the serial console).
set -uo pipefail
source "$(dirname "$0")/lib.sh"
runs=${1:-3}
mib=${2:-1024}
kinds=${3:-qemu vhost vmm}
cpus=${4:-2}
# Phases each kind already measured in an earlier testbed boot ("qemu:3 vhost:1 ..."): skipped.
measured=${5:-}
work=$(mktemp -d)
image=/var/lib/vmtools/images/default
# The testbed's own processes all on its CPU 0, and each nested guest's vCPU threads alone on CPU
# 1 (pin_vcpus; QEMU names its threads with debug-threads=on), the same for every kind. Unpinned,
# the testbed's emulated SVM killed a 2-vCPU guest carrying 9P over vsock (vmm's or QEMU's
# vhost-vsock) in nearly every find + stat: 0 of 10 boots finished it; pinned, 2 of 2 did. The
# testbed has 2 CPUs (tools/testbed).
for pid in $(ps -e -o pid=); do taskset -a -p 1 "$pid" >/dev/null 2>&1; done
pin_vcpus() { # pin_vcpus PID: PID's (or its child's) vCPU threads, vmm's "vcpuN" or QEMU's "CPU N/KVM", to CPU 1
  local pid i t vcpu='^(vcpu[0-9]+|CPU [0-9]+/KVM)$'
  for i in $(seq 60); do
    for pid in "$1" $(pgrep -P "$1"); do
      [ "$(cat /proc/"$pid"/task/*/comm 2>/dev/null | grep -cE "$vcpu")" -ge "$cpus" ] || continue
      for t in /proc/"$pid"/task/*; do
        if grep -qE "$vcpu" "$t/comm"; then taskset -p 2 "${t##*/}"; else taskset -p 1 "${t##*/}"; fi
      done >/dev/null 2>&1
      return 0
    done
    sleep 0.5
  done
  echo "bench: no vCPU threads of $1 to pin" >&2
}
seneschal() { busctl --system call org.vmtools.Seneschal /org/vmtools/Seneschal org.vmtools.Seneschal "$@"; }
share=$work/share
mkdir -p "$share/many" && (cd "$share/many" && seq 10000 | xargs touch)

# The workload in the guest, one phase at a time, timed there: "write" and "read" print MiB/s,
# "find" prints the ms that find + stat of 10 000 files took; "prep" writes the file without
# counting. The file written stays in the share until "read" has read it, so a guest booted again
# can go on where a dead one stopped.
cat >"$share/workload.sh" <<'SH'
#!/bin/sh
dir=$1 mib=$2 phase=$3
now() { awk '{ print int($1 * 1000) }' /proc/uptime; }  # ms; busybox date has no %N
t0=$(now)
case $phase in
  write | prep) dd if=/dev/zero of=$dir/big bs=1048576 count=$mib conv=fsync 2>/dev/null || exit 1 ;;
  read) echo 3 >/proc/sys/vm/drop_caches; t0=$(now); dd if=$dir/big of=/dev/null bs=1048576 2>/dev/null || exit 1; rm -f $dir/big ;;
  find) find $dir/many -type f | xargs stat -c %s >/dev/null || exit 1 ;;
esac
t1=$(now)
case $phase in find) echo "$((t1 - t0))" ;; *) echo "$((mib * 1000 / (t1 - t0 + 1)))" ;; esac
SH
chmod +x "$share/workload.sh"

# The phases KIND has still to run, in order: those of all runs less the ones it measured in an
# earlier testbed boot; a run taken up at "read" writes its file again first ("prep"), as that
# testbed's share is gone. Each result line is "PHASE VALUE".
phases() {
  local skip
  skip=$(printf '%s\n' $measured | sed -n "s/^$1://p")
  for r in $(seq "$runs"); do printf '%s\n' write read find; done | tail -n +$((${skip:-0} + 1)) |
    awk 'NR == 1 && $0 == "read" { print "prep" } { print }'
}

# run_vmm: the default image in vmm with seneschal's server mounted at /mnt/shared (as concierge
# sets it up); the phases go through maitred. run_vhost: the same image, server and mount with
# QEMU/KVM and vhost-vsock carrying the vsock instead of vmm (maitred reached through a socat
# bridge: vmtoolsctl speaks to Unix sockets), so that vmm's vsock is compared on its own. A guest
# that dies (the nested testbed's emulated SVM, see tools/test) is booted again and the phase it
# was in starts over, six boots at most.
run_vmm() { run_agent vmm; }
run_vhost() { run_agent vhost; }
# The VMMs, exec'd so that a background boot's $! is the VMM itself.
boot_vmm() {
  exec vmm run --kernel $image/vmlinuz --initrd $image/initrd.img --mem 512 --cpus "$cpus" --no-console-input \
    --params quiet --cid 3 --vsock "$work/vmm.sock" --serial "file=$work/vmm-serial.log"
}
boot_vhost() {
  exec qemu-system-x86_64 -name bench,debug-threads=on -M q35 -enable-kvm -cpu host -m 512 -smp "$cpus" -nodefaults \
    -no-user-config -display none -no-reboot -serial "file:$work/vhost-serial.log" -kernel $image/vmlinuz \
    -initrd $image/initrd.img -append "console=ttyS0 quiet" -device vhost-vsock-pci,guest-cid=4
}

run_agent() {
  local kind=$1 boot=0 sock=$work/vmm.sock dir=/mnt/shared/bench handle ready vm bridge= phase line agent server listen
  # What differs by kind: how vmtoolsctl reaches maitred, where seneschal's server listens, and
  # where the guest's VmReady arrives; boot_KIND starts the VMM.
  case $kind in
    vmm) agent=(--vsock "$sock") server=(1 socket s "${sock}_16384") listen=(--vsock "$sock") ;;
    vhost)
      agent=(--socket "$work/agent.sock") server=(2 vsock_port u 16384 vsock_cid u 4) listen=(--listen vsock:7777)
      modprobe vhost_vsock ;;
  esac
  phases "$kind" >"$work/todo"
  while [ -s "$work/todo" ] && [ "$boot" -lt 6 ]; do
    boot=$((boot + 1))
    rm -f "$sock"* "$work/agent.sock"
    handle=$(seneschal StartServer 'a{sv}' "${server[@]}" | cut -d' ' -f2)
    vmtoolsctl guest ready "${listen[@]}" --timeout 300 >/dev/null & ready=$!
    seneschal SharePath 'usa{sv}' "$handle" "$share" 2 writable b true name s bench >/dev/null
    sleep 0.5
    "boot_$kind" </dev/null >"$work/$kind.log" 2>&1 &
    vm=$!
    pin_vcpus "$vm" &
    [ "$kind" = vhost ] && { socat UNIX-LISTEN:"$work/agent.sock",fork VSOCK-CONNECT:4:8888 & bridge=$!; }
    if wait "$ready" && vmtoolsctl guest mount-9p "${agent[@]}" 16384 /mnt/shared; then
      while read -r phase <&3; do
        # A stalled guest is given up on after 5 minutes (a phase takes under three).
        line=$(timeout 300 vmtoolsctl exec "${agent[@]}" -- "$dir/workload.sh" "$dir" "$mib" "$phase") && [ -n "$line" ] || break
        echo "$phase $line"
        sed -i 1d "$work/todo"
      done 3<"$work/todo"
    else
      echo "bench: the $kind guest did not come up or mount" >&2
    fi
    if [ -s "$work/todo" ]; then
      echo "bench: $kind boot $boot ended in phase $(head -n 1 "$work/todo"):" >&2
      if kill -0 "$vm" 2>/dev/null; then
        echo "  the guest stopped answering" >&2
      else  # vmm names the error; QEMU says why it stopped last, if at all
        { grep -m 1 'error' "$work/$kind.log" || tail -n 2 "$work/$kind.log"; } | sed 's/^/  /' >&2
      fi
    fi
    timeout 60 vmtoolsctl guest shutdown "${agent[@]}" >/dev/null 2>&1
    wait_exit "$vm" 60 >/dev/null || kill -9 "$vm" 2>/dev/null
    [ -n "$bridge" ] && kill "$bridge" 2>/dev/null
    seneschal StopServer u "$handle" >/dev/null
  done
}

# run_qemu: boots the same kernel in QEMU (KVM) with -virtfs on the share and an initramfs whose
# init mounts it like maitred does (cache=none, msize 256 KiB) and runs the same phases.
run_qemu() {
  [ -n "$(phases qemu)" ] || return 0
  cat >"$work/qemu-init" <<SH
#!/bin/sh
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in virtio_pci 9pnet_virtio 9p; do modprobe \$m; done
mkdir -p /mnt/shared
if mount -t 9p share /mnt/shared -o trans=virtio,version=9p2000.L,cache=none,access=any,msize=262144; then
  for phase in $(phases qemu | tr '\n' ' '); do echo "BENCH \$phase \$(/mnt/shared/workload.sh /mnt/shared $mib \$phase)"; done
else
  echo "BENCH-FAILED: mount"
fi
poweroff -f
SH
  make_initramfs "$work/qemu-initrd.gz" "$work/qemu-init" virtio_pci 9pnet_virtio 9p || echo "bench: make_initramfs failed" >&2
  timeout $((runs * 900 + 120)) qemu-system-x86_64 -name bench,debug-threads=on -M q35 -enable-kvm -cpu host -m 512 -smp "$cpus" -nodefaults \
    -no-user-config -display none -no-reboot -serial "file:$work/qemu-serial.log" \
    -kernel $image/vmlinuz -initrd "$work/qemu-initrd.gz" -append "console=ttyS0 quiet panic=-1" \
    -virtfs local,path="$share",mount_tag=share,security_model=passthrough,id=fs0 </dev/null >"$work/qemu.log" 2>&1 &
  local vm=$!
  pin_vcpus "$vm" &
  wait "$vm"
  tr -d '\r' <"$work/qemu-serial.log" | sed -n 's/^BENCH \([a-z]* [0-9][0-9]*\)$/\1/p'
  grep -q '^BENCH [a-z]* [0-9]' "$work/qemu-serial.log" || { echo "bench: the QEMU guest gave no results:" >&2; tail -n 8 "$work/qemu.log" "$work/qemu-serial.log" >&2; }
}

echo "bench: 9P, $mib MiB sequential write (fsync) and read, find + stat of 10 000 files; $runs runs each; $cpus vCPUs, 512 MiB guests"
for kind in $kinds; do
  "run_$kind" | while read -r phase value; do echo "  $kind: $phase $value"; done
done
rm -rf "$work"
