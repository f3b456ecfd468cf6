#!/bin/bash
# Inside the testbed (see tools/bench-boot): boots the same kernel and initramfs with each VMM
# RUNS times and prints medians; vmm and QEMU's microvm also boot the ELF vmlinux through PVH.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
runs=${1:-10}
mem=256
work=$(mktemp -d)
cat >"$work/init" <<'INIT'
#!/bin/sh
echo BENCH-INIT
sleep 1
reboot -f
INIT
make_initramfs "$work/initrd.gz" "$work/init"
# The ELF vmlinux inside the bzImage (an xz stream after the setup code), for PVH boots.
xz_at=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$GUEST_KERNEL" | head -n 1 | cut -d: -f1)
tail -c +$((xz_at + 1)) "$GUEST_KERNEL" 2>/dev/null | xz -dc >"$work/vmlinux" 2>/dev/null
params="console=ttyS0 reboot=k panic=-1 quiet"

now_us() { echo "${EPOCHREALTIME/./}"; }

# rss_overhead PID: RSS in KiB of every mapping smaller than guest RAM (guest RAM is the one
# mapping of at least $mem MiB).
rss_overhead() {
  awk -v ram=$((mem * 1024)) '
    /^Size:/ { size = $2 }
    /^Rss:/ { if (size < ram) total += $2 }
    END { print total + 0 }' "/proc/$1/smaps"
}

# one NAME EXIT CMD...: one boot; appends "init_ms exit_ms rss_kib" to $work/NAME and prints it.
# EXIT=wait measures the time to the VMM's exit after the guest reboots; EXIT=kill ends the VMM
# once init ran (QEMU's microvm has no i8042, so its reboot=k exit waits ~40 s on timeouts).
one() {
  local name=$1 exit_mode=$2; shift 2
  local fifo=$work/fifo start init=0 rss=0 pid exit_ms
  rm -f "$fifo"; mkfifo "$fifo"
  start=$(now_us)
  timeout -k 5 90 "$@" </dev/null >"$fifo" 2>/dev/null &
  pid=$!
  while IFS= read -r line; do
    case $line in
      *BENCH-INIT*)
        init=$(( ($(now_us) - start) / 1000 ))
        sleep 0.3
        rss=$(rss_overhead "$(pgrep -P "$pid" | head -n 1)")
        [ "$exit_mode" = kill ] && pkill -P "$pid"
        ;;
    esac
  done <"$fifo"
  if [ "$exit_mode" = kill ]; then
    wait "$pid"
    exit_ms=-
  else
    wait "$pid" || init=0  # a run that failed or hung counts as never reaching init
    exit_ms=$(( ($(now_us) - start) / 1000 ))
  fi
  echo "$init $exit_ms $rss" | tee -a "$work/$name" | sed "s/^/  $name: /"
}

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) exit; if (NR % 2) print v[(NR + 1) / 2]; else print int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

vmm_cmd=(vmm run --kernel "$GUEST_KERNEL" --initrd "$work/initrd.gz" --mem $mem --cpus 1 --no-console-input --params quiet)
vmm_pvh_cmd=(vmm run --kernel "$work/vmlinux" --initrd "$work/initrd.gz" --mem $mem --cpus 1 --no-console-input --params quiet)
microvm_pvh_cmd=(qemu-system-x86_64 -M microvm -enable-kvm -cpu host -m $mem -smp 1 -nodefaults -no-user-config
  -display none -no-reboot -serial stdio -kernel "$work/vmlinux" -initrd "$work/initrd.gz" -append "$params")
microvm_cmd=(qemu-system-x86_64 -M microvm -enable-kvm -cpu host -m $mem -smp 1 -nodefaults -no-user-config
  -display none -no-reboot -serial stdio -kernel "$GUEST_KERNEL" -initrd "$work/initrd.gz" -append "$params")
q35_cmd=(qemu-system-x86_64 -M q35 -enable-kvm -cpu host -m $mem -smp 1 -nodefaults -no-user-config
  -display none -no-reboot -serial stdio -kernel "$GUEST_KERNEL" -initrd "$work/initrd.gz" -append "$params")

echo "bench: $runs boots each, $mem MiB, 1 vCPU, $(uname -r) guest, nested KVM in the testbed"
for i in $(seq "$runs"); do
  one vmm wait "${vmm_cmd[@]}"
  one vmm-pvh wait "${vmm_pvh_cmd[@]}"
  one microvm kill "${microvm_cmd[@]}"
  one microvm-pvh kill "${microvm_pvh_cmd[@]}"
  one q35 wait "${q35_cmd[@]}"
done

printf '%-22s %14s %14s %16s\n' "VMM" "to init (ms)" "to exit (ms)" "overhead (MiB)"
names="vmm vmm-pvh microvm microvm-pvh q35"
for name in $names; do
  f=$work/$name
  # Medians over the runs that reached init; failed runs are counted separately.
  init=$(awk '$1 > 0 {print $1}' "$f" | median)
  exit_ms=$(awk '$1 > 0 && $2 != "-" {print $2}' "$f" | median)
  [ -n "$exit_ms" ] || exit_ms="not measured"
  rss=$(awk '$1 > 0 {print $3}' "$f" | median)
  failed=$(awk '$1 == 0' "$f" | wc -l)
  label=$name
  case $name in
    vmm) label="vmm, bzImage" ;; vmm-pvh) label="vmm, PVH vmlinux" ;; microvm) label="qemu microvm, bzImage" ;;
    microvm-pvh) label="qemu microvm, PVH" ;; q35) label="qemu q35, bzImage" ;;
  esac
  printf '%-22s %14s %14s %16s%s\n' "$label" "$init" "$exit_ms" "$(awk -v k="$rss" 'BEGIN { printf "%.1f", k / 1024 }')" \
    "$([ "$failed" -gt 0 ] && echo "  ($failed runs never reached init)")"
done
echo "raw (init_ms exit_ms rss_kib):"
for name in $names; do echo "  $name: $(tr '\n' ';' <"$work/$name")"; done
