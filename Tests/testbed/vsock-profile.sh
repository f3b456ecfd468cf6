#!/bin/bash
# Diagnostic, not run by CI: where the time of one host → guest vsock stream goes, for vmm and for
# QEMU + vhost-vsock in the same testbed run. For each, MIB MiB (default 128) go from a host socat
# to a guest sink, and the script prints the transfer's rate, the testbed's CPU time split (user,
# system, idle, softirq), each VMM thread's CPU time, KVM's exit counts for the VM (debugfs) and
# the guest's interrupt counts, all as deltas over the transfer. KINDS (default "vmm qemu") may
# add guest kernel parameters to a VMM with "+", e.g. "vmm vmm+no-kvmapf+nopv" ("+bigbuf" gives vmm's
# host client a 2 MiB socket send buffer instead, "+midbuf" the most an unprivileged client gets,
# "+pinned" puts the vCPU threads alone on CPU 1 and the VMM's other threads on CPU 0);
# "vmm@NAME" runs the binary vmm-NAME instead of vmm (another build added to the testbed's layer,
# to compare two builds in one run); RUNS transfers
# are made in each VM (default 2), and a VM that dies has its log and console printed.
#   TESTBED_EXTRA_PACKAGES=qemu-system-x86 tools/testbed run Tests/testbed/vsock-profile.sh [MIB [KINDS [RUNS [FLAGS]]]]
lib=$(dirname "$0")/lib.sh; [ -f "$lib" ] || lib=$(dirname "$0")/../integration/lib.sh
source "$lib"
mib=${1:-128}
kinds=${2:-vmm qemu}
runs=${3:-2}
flags=${4:-}
work=$(mktemp -d)
mountpoint -q /sys/kernel/debug || mount -t debugfs debugfs /sys/kernel/debug
# The scheduler's wake-up counts (/proc/schedstat) are kept only while this is on.
sysctl -qw kernel.sched_schedstats=1 2>/dev/null
# FLAGS (comma-separated): "quick" measures only the rate (no counters: many runs, to see whether
# a VM dies); "trace" records KVM's exits and injections and prints the last of them when a VM dies;
# "exits" traces each transfer and counts KVM's exits by reason and MMIO and port accesses by address;
# "perf" samples the VMM's device thread (vmm) or vhost's kernel thread (QEMU) during each transfer
# and prints where it spends its time (needs linux-perf in TESTBED_EXTRA_PACKAGES); "info" prints
# what each guest kernel found (clock source, CPU flags, paravirtual features); "wakeups" traces
# the scheduler during each transfer and counts who woke whom (on the waker's own CPU or another)
# and who took the CPU from a runnable task.
tracing=/sys/kernel/debug/tracing
# Where the testbed's KVM modules sit, printed first: a stall can take the testbed down before the
# symbol lookup below runs, and with these a vCPU's rip can still be placed in them afterwards.
grep -E '^kvm(_amd)? ' /proc/modules | awk '{ print "testbed module", $1, "at", $6, "size", $2 }'
if [[ $flags == *trace* ]]; then
  echo 2048 >$tracing/buffer_size_kb
  for event in kvm_exit kvm_inj_exception kvm_inj_virq kvm_page_fault kvm_emulate_insn kvm_userspace_exit; do
    [ -d $tracing/events/kvm/$event ] && echo 1 >$tracing/events/kvm/$event/enable
  done
  echo 1 >$tracing/tracing_on
fi

cat >"$work/init" <<'INIT'
#!/bin/sh
export PATH=/usr/bin:/bin:/sbin
mount -t proc proc /proc
mount -t devtmpfs dev /dev
mount -t sysfs sys /sys
modprobe virtio_pci; modprobe vmw_vsock_virtio_transport
socat -u -b 65536 VSOCK-LISTEN:1235,reuseaddr,fork OPEN:/dev/null &
socat VSOCK-LISTEN:1237,reuseaddr,fork SYSTEM:'cat /proc/interrupts /proc/stat' &
sleep 1
# "vsockirq=N" on the kernel command line (a KINDS "+" parameter) sends the vsock device's
# interrupts to guest CPU N.
if [ -n "$vsockirq" ]; then
  for irq in $(grep -E 'virtio[0-9]+-(virtqueues|input|output|rx|tx|event)' /proc/interrupts | cut -d: -f1); do
    echo "$vsockirq" >/proc/irq/$irq/smp_affinity_list
  done
fi
echo "GUEST-INFO clocksource $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource) of $(cat /sys/devices/system/clocksource/clocksource0/available_clocksource)"
echo "GUEST-INFO cpu flags $(grep -m1 '^flags' /proc/cpuinfo)"
dmesg | grep -iE 'clocksource|tsc|kvm|paravirt|x2apic|apic|hypervisor|spinlock|steal|pv' | sed 's/^/GUEST-INFO /'
echo PROFILE-READY
# Every 10 s, the vsock interrupt counts on the console: after a stall they tell an interrupt
# that never arrived from one the guest took and did nothing with.
while true; do sleep 10; echo "interrupts at $(cut -d' ' -f1 /proc/uptime) s: $(grep -E 'virtio.*(rx|tx|virtqueues)' /proc/interrupts | tr -s ' ' | cut -d' ' -f2-4,7 | tr '\n' ' ')"; done
INIT
INITRAMFS_BINARIES=$(command -v socat) make_initramfs "$work/initrd.gz" "$work/init" virtio_pci vmw_vsock_virtio_transport

now_ms() { echo $(( ${EPOCHREALTIME/./} / 1000 )); }
sndbuf=
connect() {
  case $1 in
    vmm) echo "socat -t 60 -b 65536 - UNIX-CONNECT:$work/vsock.sock$sndbuf" ;;
    qemu) echo "socat -t 60 -b 65536 - VSOCK-CONNECT:4:$2" ;;
  esac
}
preamble() { [ "$1" = vmm ] && printf 'CONNECT %s\n' "$2"; true; }

# host_counters PID: the testbed's CPU, the VMM's threads (and vhost's), KVM's counters for the VM.
host_counters() {
  local pid=$1 t
  head -n 1 /proc/stat
  # Each thread: CPU ticks (user, system), then its schedstat (ns on a CPU, ns waiting on a run
  # queue, time slices) and its involuntary context switches: a thread that was runnable but
  # waited for a CPU shows it here.
  for t in /proc/"$pid"/task/* $(pgrep -x "vhost-$pid" | sed 's|^|/proc/|'); do
    echo "thread $(cat "$t/comm" | tr ' ' _)/${t##*/} $(cut -d' ' -f14,15 "$t/stat") $(cat "$t/schedstat")" \
      "$(sed -n 's/^nonvoluntary_ctxt_switches:\s*//p' "$t/status")"
  done
  # Each testbed CPU (/proc/schedstat): wake-ups, those of a task on the waker's own CPU, and the
  # time all tasks spent waiting for it.
  awk '/^cpu[0-9]/ { print "sched", $1, $6, $7, $9 }' /proc/schedstat
  for f in /sys/kernel/debug/kvm/"$pid"-*/*; do [ -f "$f" ] && echo "kvm $(basename "$f") $(cat "$f" 2>/dev/null)"; done
}
# guest_counters KIND: the guest's interrupt and context-switch counts (over vsock port 1237).
guest_counters() {
  (preamble "$1" 1237; sleep 1) | $(connect "$1" 1237) | tr -d '\r' | awk '/virtio|^intr|^ctxt|^ *(RES|CAL|TLB|LOC):/ { print "guest", $0 }'
}

# report BEFORE AFTER: the deltas.
report() {
  paste -d' ' <(grep '^cpu ' "$1") <(grep '^cpu ' "$2") | awk '{ n = NF / 2; for (i = 2; i <= n; i++) d[i] = $(i + n) - $i
    total = 0; for (i = 2; i <= n; i++) total += d[i]
    printf "  testbed CPU: user %d%% system %d%% idle %d%% iowait %d%% irq %d%% softirq %d%% (%d ticks)\n",
      100 * d[2] / total, 100 * d[4] / total, 100 * d[5] / total, 100 * d[6] / total, 100 * d[7] / total, 100 * d[8] / total, total }'
  join <(grep '^thread' "$1" | cut -d' ' -f2- | sort) <(grep '^thread' "$2" | cut -d' ' -f2- | sort) 2>/dev/null |
    awk '{ u = $8 - $2; s = $9 - $3; if (u + s > 0) printf "  thread %-22s %5d ticks (user %d, system %d), ran %d ms, waited for a CPU %d ms, %d slices, %d preempted\n",
      $1, u + s, u, s, ($10 - $4) / 1e6, ($11 - $5) / 1e6, $12 - $6, $13 - $7 }'
  join <(grep '^sched' "$1" | cut -d' ' -f2-) <(grep '^sched' "$2" | cut -d' ' -f2-) |
    awk '{ printf "  testbed %s: %d wake-ups (%d on the waker'"'"'s CPU), tasks waited for it %d ms\n", $1, $5 - $2, $6 - $3, ($7 - $4) / 1e6 }'
  join <(grep '^kvm' "$1" | awk '{ print $2, $3 }' | sort) <(grep '^kvm' "$2" | awk '{ print $2, $3 }' | sort) 2>/dev/null |
    awk '{ if ($3 - $2 > 0) printf "  kvm %-28s %10d\n", $1, $3 - $2 }'
  diff <(grep '^guest' "$1") <(grep '^guest' "$2") | grep '^>' | sed 's/^> guest/  guest after:/' | cut -c1-150
  grep '^guest' "$1" | sed 's/^guest/  guest before:/' | cut -c1-150
}

for variant in $kinds; do
  kind=${variant%%+*}
  vmm_bin=vmm; [[ $kind == vmm@* ]] && { vmm_bin=vmm-${kind#vmm@}; kind=vmm; }
  params="quiet"; [ "$kind" = "$variant" ] || params="quiet ${variant#*+}"; params=${params//+/ }
  # "+bigbuf" is not a kernel parameter: vmm's host client gets a 2 MiB send buffer (a Unix
  # socket's default is about 208 KiB, and its writer wakes only once under a quarter is queued).
  # "+midbuf" asks for what an unprivileged client can have by default (net.core.wmem_max, which
  # the kernel doubles: about 416 KiB).
  sndbuf=; [[ $params == *bigbuf* ]] && { sysctl -qw net.core.wmem_max=4194304; sndbuf=,sndbuf=2097152; }
  [[ $params == *midbuf* ]] && sndbuf=,sndbuf=$(sysctl -n net.core.wmem_max)
  # "+pinned": the VMM's vCPU threads alone on testbed CPU 1, its other threads (the device
  # thread, or vhost's worker) on CPU 0 with everything else: vmm's own --vcpu-affinity and
  # --device-affinity, taskset for QEMU's threads.
  pinned=; [[ $params == *pinned* ]] && pinned=1
  params=${params//bigbuf/}; params=${params//midbuf/}; params=${params//pinned/}
  if [ "$kind" = qemu ]; then modprobe vhost_vsock; else modprobe -r vhost_vsock 2>/dev/null; fi
  rm -f "$work/serial.log"
  case $kind in
    vmm) "$vmm_bin" run --kernel "$GUEST_KERNEL" --initrd "$work/initrd.gz" --mem 512 --cpus 2 --no-console-input \
      --params "$params" --socket "$work/control.sock" --cid 3 --vsock "$work/vsock.sock" --serial "file=$work/serial.log" \
      ${pinned:+--vcpu-affinity 1 --device-affinity 0} </dev/null >"$work/vmm.log" 2>&1 & ;;
    qemu) qemu-system-x86_64 -M q35 -enable-kvm -cpu host -m 512 -smp 2 -nodefaults -no-user-config -display none \
      -serial "file:$work/serial.log" -kernel "$GUEST_KERNEL" -initrd "$work/initrd.gz" \
      -append "console=ttyS0 $params" -device vhost-vsock-pci,guest-cid=4 </dev/null >/dev/null 2>&1 & ;;
  esac
  vm=$!
  for i in $(seq 120); do grep -q PROFILE-READY "$work/serial.log" 2>/dev/null && break; sleep 0.5; done
  # vmm places its threads itself (above); QEMU's are placed from outside.
  if [ -n "$pinned" ] && [ "$kind" = qemu ]; then
    for t in /proc/"$vm"/task/* $(pgrep -x "vhost-$vm" | sed 's|^|/proc/|'); do
      case $(cat "$t/comm") in vcpu* | "CPU "*) taskset -pc 1 "${t##*/}" ;; *) taskset -pc 0 "${t##*/}" ;; esac >/dev/null
    done
  fi
  [[ $flags == *info* ]] && tr -d '\r' <"$work/serial.log" | grep GUEST-INFO | sed "s/^/$variant /" | cut -c1-2000
  for run in $(seq "$runs"); do
    [[ $flags == *quick* ]] || { guest_counters "$kind"; host_counters "$vm"; } >"$work/before" 2>/dev/null
    if [[ $flags == *exits* ]]; then
      echo 8192 >$tracing/buffer_size_kb
      echo >$tracing/trace
      for event in kvm_exit kvm_mmio kvm_pio kvm_msr; do echo 1 >$tracing/events/kvm/$event/enable; done
      echo 1 >$tracing/tracing_on
    fi
    if [[ $flags == *wakeups* ]]; then
      echo 8192 >$tracing/buffer_size_kb
      echo >$tracing/trace
      for event in sched_wakeup sched_switch; do echo 1 >$tracing/events/sched/$event/enable; done
      echo 1 >$tracing/tracing_on
    fi
    if [[ $flags == *perf* ]]; then
      sampled=$(for t in /proc/"$vm"/task/*; do [ "$(cat "$t/comm")" = devices ] && echo "${t##*/}"; done; pgrep -x "vhost-$vm")
      perf record -q -e cpu-clock -F 2000 -g -o "$work/perf.data" -t "$(echo $sampled | tr ' ' ,)" 2>"$work/perf.log" &
      perf_pid=$!
      events=$(for c in readv read write epoll_wait epoll_ctl ioctl sendmsg recvmsg; do printf 'syscalls:sys_enter_%s,' $c; done)
      perf stat -x, -e "${events%,}" -o "$work/perf.stat" -t "$(echo $sampled | tr ' ' ,)" 2>/dev/null &
      stat_pid=$!
      [ "$kind" = vmm ] && vmm status "$work/control.sock" >"$work/status.before"
    fi
    start=$(now_ms)
    (preamble "$kind" 1235; head -c "${mib}M" /dev/zero) | timeout 120 $(connect "$kind" 1235) >/dev/null
    status=$?
    ms=$(( $(now_ms) - start ))
    if [ "$status" = 124 ]; then
      # A stalled stream: what the device holds (queues, credit, each stream), then the guest.
      echo "$variant run $run: the transfer stalled for 120 s; the VMM's state and the guest's console:"
      [ "$kind" = vmm ] && vmm status "$work/control.sock" | sed 's/{"ready"/\n  {"ready"/g; s/"connections"/\n  "connections"/'
      grep -v '^\[' "$work/vmm.log" 2>/dev/null | tail -n 5
      # Each VMM thread: scheduler state, where it sleeps, CPU ticks now and 2 s later, and the
      # kernel stack of a vCPU thread (in KVM_RUN or blocked in the VMM?).
      for pass in 1 2; do
        for t in /proc/"$vm"/task/*; do
          echo "  $(cat "$t/comm") state $(cut -d' ' -f3 "$t/stat") wchan $(cat "$t/wchan" 2>/dev/null) ticks $(cut -d' ' -f14,15 "$t/stat")"
        done
        [ "$pass" = 1 ] && sleep 2
      done
      for t in /proc/"$vm"/task/*; do
        [[ $(cat "$t/comm") == vcpu* ]] && { echo "  $(cat "$t/comm") kernel stack:"; sed 's/^/    /' "$t/stack" 2>/dev/null | head -n 12; }
      done
      if [ "$kind" = vmm ]; then
        # Where each vCPU is, three times a second apart (named from the kernel's System.map when
        # the guest runs with nokaslr). Reading them takes halted vCPUs out of their wait: if the
        # guest answers below and did not before, it had missed a wake-up.
        map=$(ls /boot/System.map-* 2>/dev/null | head -n 1)
        for i in 1 2 3; do
          vmm registers "$work/control.sock" | grep -o '"id":[0-9]*,"registers":"[^"]*"' | while read -r line; do
            rip=$(sed -n 's/.*rip=0x\([0-9a-f]*\).*/\1/p' <<<"$line")
            symbol=
            [[ -n $map && $params == *nokaslr* && -n $rip ]] && symbol=$(awk -v rip="$(printf %016s "$rip" | tr ' ' 0)" '
              # Fixed-width hex compares as text (awk numbers cannot hold 64-bit addresses).
              function low(s,  i, n) { n = 0; for (i = 9; i <= 16; i++) n = n * 16 + index("0123456789abcdef", substr(s, i, 1)) - 1; return n }
              $1 <= rip && $1 > best { best = $1; name = $3 } END { if (name) printf " (%s+0x%x)", name, low(rip) - low(best) }' "$map")
            echo "  $line$symbol" | cut -c1-300
            # Signs that the vCPU holds the testbed kernel's state instead of the guest's (the
            # emulated SVM's world switch mixing the two up): a page table outside the guest's
            # RAM, or a rip that names a spot in the testbed's own KVM modules.
            cr3=$(sed -n 's/.* cr3=0x\([0-9a-f]*\).*/\1/p' <<<"$line")
            [[ -n $cr3 ]] && (( 16#$cr3 >= 512 << 20 )) && echo "    cr3 0x$cr3 is outside the guest's 512 MiB of RAM"
            [[ -n $rip ]] && sort /proc/kallsyms | awk -v rip="$(printf %016s "$rip" | tr ' ' 0)" '
              function low(s,  i, n) { n = 0; for (i = 9; i <= 16; i++) n = n * 16 + index("0123456789abcdef", substr(s, i, 1)) - 1; return n }
              $1 <= rip && $2 ~ /^[tT]$/ { best = $1; name = $3; module = $4 }
              END { if (module ~ /kvm/ && low(rip) - low(best) < 8192) printf "    rip is the testbed kernel'"'"'s %s+0x%x %s\n", name, low(rip) - low(best), module }'
          done
          sleep 1
        done
      fi
      echo "does the guest still answer on another stream (its interrupt counts)?"
      timeout 30 bash -c "$(declare -f preamble connect guest_counters); work=$work; guest_counters $kind" || echo "  no answer"
      tr -d '\r' <"$work/serial.log" | tail -n 40
      break
    fi
    if [[ $flags == *exits* ]]; then
      echo 0 >$tracing/tracing_on
      for event in kvm_exit kvm_mmio kvm_pio kvm_msr; do echo 0 >$tracing/events/kvm/$event/enable; done
      echo "  exits by reason, MMIO and ports by address (traced):"
      awk '/kvm_exit:/ { for (i = 1; i <= NF; i++) if ($i == "reason") { n["exit " $(i + 1)]++ } }
        /kvm_mmio:/ { for (i = 1; i <= NF; i++) if ($i == "gpa") { n["mmio " $(i - 3) " " $(i + 1)]++ } }
        /kvm_pio:/ { for (i = 1; i <= NF; i++) if ($i == "at") { n["pio " $(i - 1) " " $(i + 1)]++ } }
        /kvm_msr:/ { for (i = 1; i <= NF; i++) if ($i == "msr_write" || $i == "msr_read") { n[$i " " $(i + 1)]++ } }
        END { for (k in n) printf "    %8d %s\n", n[k], k }' $tracing/trace | sort -rn | head -n 25
      grep -c . $tracing/trace | sed 's/^/  trace lines: /'
    fi
    if [[ $flags == *wakeups* ]]; then
      echo 0 >$tracing/tracing_on
      for event in sched_wakeup sched_switch; do echo 0 >$tracing/events/sched/$event/enable; done
      # Thread names lose their numbers (kworker/1:2 is kworker), so that counts add up.
      echo "  wake-ups (traced): waker → woken, and whether it was queued on the waker's own CPU:"
      sed -nE 's/^ *(.+)-[0-9]+ +\[([0-9]+)\] .* sched_wakeup: comm=(.+) pid=[0-9]+ prio=[0-9]+ target_cpu=([0-9]+).*/\1|\2|\3|\4/p' \
        $tracing/trace | sed -E 's/kworker[^|]*/kworker/g; s/vhost-[0-9]+/vhost/g' |
        awk -F'|' '{ print $1 " → " $3 ($2 + 0 == $4 + 0 ? " (same CPU)" : " (other CPU)") }' | sort | uniq -c | sort -rn | head -n 20
      echo "  preemptions (traced): a runnable task's CPU went to another:"
      sed -nE 's/.* sched_switch: prev_comm=(.+) prev_pid=[0-9]+ prev_prio=[0-9]+ prev_state=R\+? ==> next_comm=(.+) next_pid=.*/\1 → \2/p' \
        $tracing/trace | sed -E 's/kworker[^ ]*/kworker/g; s/vhost-[0-9]+/vhost/g' | sort | uniq -c | sort -rn | head -n 12
      grep -c . $tracing/trace | sed 's/^/  trace lines: /'
    fi
    if [[ $flags == *perf* ]]; then
      kill -INT "$perf_pid" "$stat_pid"; wait "$perf_pid" "$stat_pid"
      echo "  the sampled thread's system calls:"
      grep syscalls "$work/perf.stat" | awk -F, '{ printf "    %10s %s\n", $1, $3 }'
      if [ "$kind" = vmm ]; then
        echo "  each queue's used index and interrupts, before and after:"
        vmm status "$work/control.sock" >"$work/status.after"
        for f in before after; do
          echo "    $f: $(grep -o '{"ready"[^}]*}' "$work/status.$f" | sed 's/.*"next_used":\([0-9]*\).*"interrupts":\([0-9]*\).*/used \1 irq \2;/' | tr '\n' ' ')"
        done
      fi
      echo "  by object:"; perf report -q -i "$work/perf.data" --no-children --sort dso -g none 2>/dev/null | grep "%" | head -n 6
      echo "  where the device thread's time goes (perf, cpu-clock samples, by symbol):"
      perf report -q -i "$work/perf.data" --no-children --sort sym -g none 2>/dev/null | grep '%' | head -n 45 | cut -c1-160
      echo "  by caller chain (top):"
      perf report -q -i "$work/perf.data" --children --sort sym -g none 2>/dev/null | grep '%' | head -n 30 | cut -c1-160
      tail -n 3 "$work/perf.log"
    fi
    [[ $flags == *quick* ]] || { host_counters "$vm"; guest_counters "$kind"; } >"$work/after" 2>/dev/null
    echo "$variant run $run: $mib MiB host→guest in $ms ms: $(( mib * 1000 / (ms + 1) )) MiB/s"
    [[ $flags == *quick* ]] || report "$work/before" "$work/after"
    # A failed transfer may be a VMM on its way out: give it time to go before looking.
    [ "$status" = 0 ] || sleep 3
    kill -0 "$vm" 2>/dev/null && continue
    wait "$vm"
    echo "$variant ended during the run (status $?); its log and the guest's console:"
    grep -v '^\[' "$work/vmm.log" 2>/dev/null | tail -n 40
    tr -d '\r' <"$work/serial.log" | tail -n 40
    if [[ $flags == *trace* ]]; then
      echo 0 >$tracing/tracing_on
      echo "the last KVM events of its vCPUs:"
      grep -E 'vcpu[0-9]-' $tracing/trace | tail -n 80
      echo >$tracing/trace; echo 1 >$tracing/tracing_on
    fi
    break
  done
  kill "$vm" 2>/dev/null; wait "$vm" 2>/dev/null
done
rm -rf "$work"
