#!/bin/bash
# Inside the testbed (see tools/bench-concierge): StartVm through concierge against QEMU directly.
set -uo pipefail
runs=${1:-10}
concurrent=5
work=$(mktemp -d)
image=/var/lib/vmtools/images/default
c() { busctl --system call org.vmtools.Concierge /org/vmtools/Concierge org.vmtools.Concierge "$@"; }
now_ms() { echo $(( ${EPOCHREALTIME/./} / 1000 )); }
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) exit; if (NR % 2) print v[(NR + 1) / 2]; else print int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

# concierge_start NAME: ms for StartVm (empty when it failed).
concierge_start() {
  local start; start=$(now_ms)
  c StartVm 'sa{sv}' "$1" 2 memory_mib u 512 cpus u 2 >/dev/null || { echo "bench: StartVm $1 failed" >&2; return 1; }
  echo $(( $(now_ms) - start ))
}

# qemu_start CID: starts QEMU (q35, vhost-vsock, the same image) in the background.
qemu_start() {
  qemu-system-x86_64 -M q35 -enable-kvm -cpu host -m 512 -smp 2 -nodefaults -no-user-config -display none \
    -serial "file:$work/qemu-$1.log" -kernel $image/vmlinuz -initrd $image/initrd.img \
    -append "console=ttyS0 quiet" -device vhost-vsock-pci,guest-cid="$1" </dev/null >/dev/null 2>&1 &
  echo $!
}

# readies N: waits for N VmReady calls on vsock port 7777, one listener after another (maitred
# retries a refused VmReady, every 0.1–1 s).
readies() { for _ in $(seq "$1"); do vmtoolsctl guest ready --listen vsock:7777 --timeout 300 >/dev/null || return 1; done; }

c ListVms >/dev/null  # D-Bus activation: concierge is up before the first measurement
echo "bench: StartVm (concierge, configured guest) vs QEMU q35 + vhost-vsock to VmReady; default image, 2 vCPUs, 512 MiB, $runs runs"
for r in $(seq "$runs"); do
  ms=$(concierge_start "b$r") && echo "$ms" >>"$work/concierge" && echo "  concierge: StartVm b$r took $ms ms"
  c StopVm s "b$r" >/dev/null
done
modprobe vhost_vsock  # only now: loaded, it made vmm guests triple-fault in the testbed (bench.d/vsock.sh)
for r in $(seq "$runs"); do
  readies 1 & listener=$!
  sleep 0.3
  start=$(now_ms); pid=$(qemu_start 3)
  if wait "$listener"; then ms=$(( $(now_ms) - start )); echo "$ms" >>"$work/qemu"; echo "  qemu: VmReady after $ms ms"; fi
  kill "$pid"; wait "$pid" 2>/dev/null
done

echo "bench: $concurrent VMs started at once"
modprobe -r vhost_vsock
start=$(now_ms)
for i in $(seq "$concurrent"); do concierge_start "m$i" >"$work/m$i" & done
wait
concierge_all=$(( $(now_ms) - start ))
ok=$(cat "$work"/m* | grep -c .)
echo "  concierge: $ok of $concurrent up after $concierge_all ms ($(cat "$work"/m* | tr '\n' ' ')ms each)"
c StopAllVms >/dev/null
modprobe vhost_vsock
readies "$concurrent" & listener=$!
sleep 0.3
start=$(now_ms); pids=()
for i in $(seq "$concurrent"); do pids+=("$(qemu_start $((10 + i)))"); done
if wait "$listener"; then qemu_all=$(( $(now_ms) - start )); else qemu_all=failed; fi
echo "  qemu: $concurrent up after $qemu_all ms"
kill "${pids[@]}"; wait 2>/dev/null

printf '\n%-44s %12s %16s\n' "" "median of $runs" "$concurrent at once"
printf '%-44s %9s ms %13s ms\n' "concierge StartVm (to a configured guest)" "$(median <"$work/concierge")" "$concierge_all"
printf '%-44s %9s ms %13s ms\n' "QEMU q35 + vhost-vsock directly (to VmReady)" "$(median <"$work/qemu")" "$qemu_all"
rm -rf "$work"
