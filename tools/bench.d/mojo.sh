#!/bin/bash
# Runs inside the testbed (tools/bench-mojo): RUNS MIB ROUNDS.
set -uo pipefail
runs=$1 mib=$2 rounds=$3
probe=/usr/lib/vmtools-testbed/bin/mojo-probe
work=$(mktemp -d)
mkdir -p /run/bench
"$probe" serve /run/bench/service.sock >/dev/null 2>&1 &
# (3): two proxies on the host, linked by a Unix socket standing in for vsock.
mojo-proxy host --socket /run/bench/link.sock --files-dir /run/bench/host-files --channel 1:/run/bench/service.sock 2>"$work/host.log" &
sleep 0.5
mojo-proxy guest --link-socket /run/bench/link.sock --files-dir /run/bench/guest-files --channel 1:/run/bench/local.sock 2>"$work/guest.log" &
# (2): a VM with the channel, the probe copied in.
vmtoolsctl start bench --mem 512 --mojo-channel 1:/run/bench/proxied.sock:/run/bench/service.sock >/dev/null 2>&1 \
  || { echo "bench-mojo: the VM did not start"; journalctl -u vmtools-concierge --no-pager | tail -n 5; exit 1; }
vmtoolsctl shell bench -- sh -c 'cat >/tmp/mojo-probe && chmod +x /tmp/mojo-probe' <"$probe"
# The same service where vmm sends the guest's connections to host vsock port 5555: plain vsock.
"$probe" serve /run/vmtools/bench/vsock.sock_5555 >/dev/null 2>&1 &
sleep 1

declare -A results
failures=0
measure() { # measure KIND COMMAND...: one run, "throughput_mib_s=.. rtt_median_us=.. rtt_p99_us=.."
  local kind=$1 line; shift
  line=$(timeout 300 "$@" 2>&1 | tail -n 1)
  echo "$kind: $line"
  case $line in
    throughput_mib_s=*) results[$kind]+="$line"$'\n' ;;
    *)
      failures=$((failures + 1))
      echo "--- $kind failed or took over 300 s: the VM's state"
      vmm status /run/vmtools/bench/control.sock | tr ',' '\n' | grep -E 'vsock|avail|used|control|replies|state|needs' | head -40
      grep -v '^\[' /run/vmtools/bench/vmm.log | tail -n 10
      tr -d '\r' </run/vmtools/bench/serial.log | tail -n 10
      ;;
  esac
}
for run in $(seq "$runs"); do
  echo "== run $run"
  measure direct "$probe" bench /run/bench/service.sock "$mib" "$rounds"
  measure vsock vmtoolsctl shell bench -- /tmp/mojo-probe bench vsock:5555 "$mib" "$rounds"
  measure vm vmtoolsctl shell bench -- /tmp/mojo-probe bench /run/bench/proxied.sock "$mib" "$rounds"
  measure host-proxies "$probe" bench /run/bench/local.sock "$mib" "$rounds"
done
vmtoolsctl stop bench >/dev/null

median() { sort -n | awk '{a[NR]=$1} END {print (NR ? a[int((NR+1)/2)] : 0)}'; }
field() { grep -o "$1=[0-9]*" | cut -d= -f2 | median; }
echo
printf '%-34s %14s %16s %13s\n' "connection ($mib MiB, $rounds round trips)" "MiB/s" "round trip µs" "p99 µs"
for kind in direct vsock vm host-proxies; do
  t=$(printf '%s' "${results[$kind]}" | field throughput_mib_s)
  m=$(printf '%s' "${results[$kind]}" | field rtt_median_us)
  p=$(printf '%s' "${results[$kind]}" | field rtt_p99_us)
  case $kind in
    direct) label="direct Unix socket (host)" ;;
    vsock) label="plain vsock, guest → host (VM)" ;;
    vm) label="mojo-proxy, guest → host (VM)" ;;
    host-proxies) label="mojo-proxy × 2 on the host" ;;
  esac
  printf '%-34s %14s %16s %13s\n' "$label" "$t" "$m" "$p"
done
td=$(printf '%s' "${results[direct]}" | field throughput_mib_s); md=$(printf '%s' "${results[direct]}" | field rtt_median_us)
for kind in vsock vm host-proxies; do
  t=$(printf '%s' "${results[$kind]}" | field throughput_mib_s); m=$(printf '%s' "${results[$kind]}" | field rtt_median_us)
  awk -v k="$kind" -v t="$t" -v td="$td" -v m="$m" -v md="$md" \
    'BEGIN { printf "ratio %-14s throughput %.2f× of direct, round trip %.1f× of direct\n", k, (td ? t / td : 0), (md ? m / md : 0) }'
done
[ "$failures" -eq 0 ] || { echo "bench-mojo: $failures measurements failed (above)"; exit 1; }
