#!/bin/bash
# Inside the testbed (see tools/bench-vsock): vsock throughput of vmm (with default host clients,
# with clients asking for a 1 MiB send buffer, and with its threads placed: vCPUs on CPU 1, the
# device thread on CPU 0) and of QEMU + vhost-vsock.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
runs=${1:-5}
mib=${2:-256}
work=$(mktemp -d)
# vhost_vsock is loaded only while QEMU runs: with it loaded, the testbed's (nested, TCG-emulated)
# host made vmm guests triple-fault under load and crashed itself under QEMU + vhost (session 13).
vhost() { if [ "$1" = qemu ]; then modprobe vhost_vsock; else modprobe -r vhost_vsock 2>/dev/null; fi; true; }

cat >"$work/init" <<INIT
#!/bin/sh
export PATH=/usr/bin:/bin:/sbin
mount -t proc proc /proc
mount -t devtmpfs dev /dev
modprobe virtio_pci; modprobe vmw_vsock_virtio_transport
# 1235: a sink; 1236: a source of as many bytes as the first line asks for.
socat -u -b 65536 VSOCK-LISTEN:1235,reuseaddr,fork,backlog=64 OPEN:/dev/null &
socat -t 600 -b 65536 VSOCK-LISTEN:1236,reuseaddr,fork,backlog=64 SYSTEM:'read n; head -c \$n /dev/zero' &
sleep 1
# Where the kernel landed (KASLR): a VMM that reports a guest crash's rip can then be symbolized.
grep -E ' _text\$' /proc/kallsyms
echo BENCH-READY
while true; do sleep 1; done
INIT
INITRAMFS_BINARIES=$(command -v socat) make_initramfs "$work/initrd.gz" "$work/init" virtio_pci vmw_vsock_virtio_transport

now_ms() { echo $(( ${EPOCHREALTIME/./} / 1000 )); }

# connect KIND PORT: a command whose stdin/stdout is a stream to guest PORT (given up after
# 300 s: a guest that stopped reading must not hold the bench).
connect() {
  case $1 in
    vmm | vmm-placed) echo "timeout 300 socat -t 120 -b 65536 - UNIX-CONNECT:$work/vsock.sock" ;;
    # The same VM, its host clients asking for a 1 MiB send buffer (the kernel doubles it): a
    # Unix socket's writer wakes only once under a quarter of its buffer is queued, and with the
    # default (208 KiB) the device can read it dry meanwhile. vmtoolsctl and seneschal ask too.
    vmm-sndbuf) echo "timeout 300 socat -t 120 -b 65536 - UNIX-CONNECT:$work/vsock.sock,sndbuf=1048576" ;;
    qemu) echo "timeout 300 socat -t 120 -b 65536 - VSOCK-CONNECT:4:$2" ;;
  esac
}
preamble() { [[ $1 == vmm* ]] && printf 'CONNECT %s\n' "$2"; true; }

# to_guest KIND STREAMS: MiB/s for $mib MiB split over STREAMS streams to the sink.
to_guest() {
  local kind=$1 streams=$2 each=$((mib / $2)) start i
  start=$(now_ms)
  for i in $(seq "$streams"); do
    ( (preamble "$kind" 1235; head -c "${each}M" /dev/zero) | $(connect "$kind" 1235) >/dev/null ) &
  done
  wait
  echo $(( mib * 1000 / ($(now_ms) - start + 1) ))
}

# from_guest KIND STREAMS: MiB/s for $mib MiB split over STREAMS streams from the source.
from_guest() {
  local kind=$1 streams=$2 each=$((mib / $2)) start i
  start=$(now_ms)
  for i in $(seq "$streams"); do
    # After the request line, socat half-closes and reads on (-t) until the guest's source ends.
    ( (preamble "$kind" 1236; echo $((each * 1048576))) | $(connect "$kind" 1236) >"$work/in-$i" ) &
  done
  wait
  local got=0
  for i in $(seq "$streams"); do got=$((got + $(stat -c %s "$work/in-$i"))); done
  echo $(( got / 1048576 * 1000 / ($(now_ms) - start + 1) ))
}

start_vm() {
  rm -f "$work/serial.log" "$work/vmm.log"  # vmm.log: the VMM's own output (QEMU's too)
  case $1 in
    # vmm-placed: the testbed's two CPUs split between the guest (vCPUs on 1) and the rest (the
    # device thread, socat and everything else on 0).
    vmm | vmm-sndbuf | vmm-placed) vmm run --kernel "$GUEST_KERNEL" --initrd "$work/initrd.gz" --mem 512 --cpus 2 --no-console-input \
      --params quiet --cid 3 --vsock "$work/vsock.sock" --serial "file=$work/serial.log" \
      $([ "$1" = vmm-placed ] && echo --vcpu-affinity 1 --device-affinity 0) </dev/null >"$work/vmm.log" 2>&1 & ;;
    qemu) qemu-system-x86_64 -M q35 -enable-kvm -cpu host -m 512 -smp 2 -nodefaults -no-user-config -display none \
      -serial "file:$work/serial.log" -kernel "$GUEST_KERNEL" -initrd "$work/initrd.gz" \
      -append "console=ttyS0 quiet" -device vhost-vsock-pci,guest-cid=4 </dev/null >"$work/vmm.log" 2>&1 & ;;
  esac
  vm_pid=$!
  for i in $(seq 120); do grep -q BENCH-READY "$work/serial.log" 2>/dev/null && return 0; sleep 0.5; done
  echo "bench: $1 did not come up" >&2
  return 1
}

# ready_time KIND: ms from starting the VM (default image, maitred as init) to maitred's VmReady
# reaching the host's startup listener, then the VMM process's resident memory (KiB).
image=/var/lib/vmtools/images/default
ready_time() {
  local kind=$1 start listener vm ms rss
  rm -f "$work"/ready.sock*
  case $kind in
    vmm*) vmtoolsctl guest ready --vsock "$work/ready.sock" --timeout 300 >/dev/null & ;;
    qemu) vmtoolsctl guest ready --listen vsock:7777 --timeout 300 >/dev/null & ;;
  esac
  listener=$!
  sleep 0.5
  start=$(now_ms)
  case $kind in
    vmm|vmm-pvh)
      kernel=$image/vmlinuz; [ "$kind" = vmm-pvh ] && kernel=$image/vmlinux
      vmm run --kernel "$kernel" --initrd $image/initrd.img --mem 512 --cpus 2 --no-console-input \
      --params quiet --cid 3 --vsock "$work/ready.sock" --serial "file=$work/ready.log" </dev/null >/dev/null 2>&1 & ;;
    qemu) qemu-system-x86_64 -M q35 -enable-kvm -cpu host -m 512 -smp 2 -nodefaults -no-user-config -display none \
      -serial "file:$work/ready.log" -kernel $image/vmlinuz -initrd $image/initrd.img \
      -append "console=ttyS0 quiet" -device vhost-vsock-pci,guest-cid=4 </dev/null >/dev/null 2>&1 & ;;
  esac
  vm=$!
  if wait "$listener"; then
    ms=$(( $(now_ms) - start ))
    rss=$(awk '/^VmRSS/ {print $2}' /proc/$vm/status)
    echo "$ms $rss"
  fi
  kill "$vm" 2>/dev/null
  wait "$vm" 2>/dev/null
}

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) exit; if (NR % 2) print v[(NR + 1) / 2]; else print int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

echo "bench: boot to VmReady with the default image ($(du -h $image/initrd.img | cut -f1) initramfs, maitred as init), $runs runs, 2 vCPUs, 512 MiB"
for kind in vmm vmm-pvh qemu; do
  for r in $(seq "$runs"); do
    vhost "$kind"
    ready_time "$kind" | tee -a "$work/$kind-ready" | awk -v k="$kind" '{ printf "  %s: VmReady after %d ms, VMM resident %d MiB\n", k, $1, $2 / 1024 }'
  done
done
printf '%-28s %18s %18s\n' "VMM" "boot→VmReady" "VMM RSS at ready"
for kind in vmm vmm-pvh qemu; do
  case $kind in vmm) label="vmm (bzImage)" ;; vmm-pvh) label="vmm (PVH vmlinux)" ;; *) label="qemu q35 + vhost-vsock" ;; esac
  printf '%-28s %15s ms %14s MiB\n' "$label" "$(cut -d' ' -f1 "$work/$kind-ready" 2>/dev/null | median)" \
    "$(( $(cut -d' ' -f2 "$work/$kind-ready" 2>/dev/null | median) / 1024 ))"
done

echo "bench: vsock (each measurement is printed as it ends), $mib MiB per measurement, $runs rounds, 64 KiB writes, 2 vCPUs, nested KVM in the testbed"
# The testbed's rates drift by several percent over a bench (and vary by as much from one boot to
# the next), so the VMMs take turns: each round boots each of them once and measures every case,
# and a VMM's figure is the median of its rounds, with the range beside it.
# The nested testbed sometimes kills a guest under load (a triple fault, a stuck vCPU: see
# Tests/testbed/vsock-profile.sh). A VM that dies is booted again for the same round, three boots
# at most per round; the table says how many guests died.
default_wmem_max=$(sysctl -n net.core.wmem_max)
kinds="qemu vmm-sndbuf vmm-placed vmm"
for kind in $kinds; do echo 0 >"$work/$kind-deaths"; done
# A measurement counts only if the VM is still up after it (a dead VM's "transfers" are instant).
measure() { # measure KIND DIRECTION STREAMS
  local value
  value=$("${2}_guest" "$1" "$3" 2>/dev/null)
  # Nothing at all through a live VM is a stalled guest, not a rate: boot again.
  kill -0 "$vm_pid" 2>/dev/null && [ "${value:-0}" -gt 0 ] || return 1
  echo "$value" >>"$work/$1-$2-$3.round"
  echo "  $1 $([ "$2" = to ] && echo "host→guest" || echo "guest→host") x$3: $value MiB/s"
}
for round in $(seq "$runs"); do
  echo "bench: round $round of $runs"
  for kind in $kinds; do
    vhost "$kind"
    # vmm-sndbuf's 1 MiB needs net.core.wmem_max raised (208 KiB by default): for it alone.
    sysctl -qw net.core.wmem_max="$([ "$kind" = vmm-sndbuf ] && echo 1048576 || echo "$default_wmem_max")"
    for boot in 1 2 3; do
      rm -f "$work/$kind"-*.round
      if ! start_vm "$kind"; then
        kill "$vm_pid" 2>/dev/null
        wait "$vm_pid" 2>/dev/null
        echo $(($(cat "$work/$kind-deaths") + 1)) >"$work/$kind-deaths"
        continue
      fi
      if measure "$kind" to 1 && measure "$kind" from 1 && measure "$kind" to 8 && measure "$kind" from 8; then
        # A round counts whole: its four figures come from one boot.
        for f in "$work/$kind"-*.round; do cat "$f" >>"${f%.round}"; done
        kill "$vm_pid" 2>/dev/null
        wait "$vm_pid" 2>/dev/null
        break
      fi
      kill "$vm_pid" 2>/dev/null
      wait "$vm_pid"
      status=$?
      echo $(($(cat "$work/$kind-deaths") + 1)) >"$work/$kind-deaths"
      echo "bench: $kind died or stalled in round $round (status $status); its log and the guest's console:"
      grep -v '^\[' "$work/vmm.log" 2>/dev/null | tail -n 3
      tr -d '\r' <"$work/serial.log" | grep -v BENCH-READY | tail -n 8
    done
  done
done

# A cell: the median of the rounds, then the lowest and highest.
cell() { [ -s "$1" ] && echo "$(median <"$1") ($(sort -n "$1" | head -n 1)-$(sort -n "$1" | tail -n 1))"; }
printf '%-28s %18s %18s %18s %18s\n' "VMM, MiB/s" "host→guest x1" "host→guest x8" "guest→host x1" "guest→host x8"
for kind in vmm vmm-sndbuf vmm-placed qemu; do
  case $kind in
    vmm) label="vmm (user-space vsock)" ;; vmm-sndbuf) label="vmm, clients' SO_SNDBUF 2M" ;;
    vmm-placed) label="vmm, vCPUs placed on CPU 1" ;;
    *) label="qemu q35 + vhost-vsock" ;;
  esac
  printf '%-28s' "$label"
  for f in to-1 to-8 from-1 from-8; do printf ' %18s' "$(cell "$work/$kind-$f" || echo "(VM died)")"; done
  echo "   ($(cat "$work/$kind-to-1" 2>/dev/null | wc -l) rounds, $(cat "$work/$kind-deaths") guest deaths)"
done
rm -rf "$work"
