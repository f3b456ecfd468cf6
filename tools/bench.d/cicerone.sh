#!/bin/bash
# Runs inside the testbed (tools/bench-cicerone): ROUNDS.
set -uo pipefail
rounds=$1
dest=org.vmtools.Cicerone
ci() { busctl --system --timeout=120 call "$dest" /org/vmtools/Cicerone "$dest" "$@"; }
now() { date +%s%N; }
ms() { echo $((($2 - $1) / 1000000)); }
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
systemd-sysusers /etc/sysusers.d/vmtools.conf && systemctl reload dbus
vmtoolsctl start bench --mem 512 >/dev/null 2>&1 \
  || { echo "bench-cicerone: the VM did not start"; journalctl -u vmtools-concierge --no-pager | tail -n 5; exit 1; }
vmtoolsctl container create bench penguin || exit 1
diagnose() {
  echo "--- cicerone's journal"; journalctl -u vmtools-cicerone --no-pager | tail -n 15
  echo "--- the VM's console"; tr -d '\r' </run/vmtools/bench/serial.log | tail -n 25
}
vmtoolsctl container start bench penguin >/dev/null || { diagnose; exit 1; }
vmtoolsctl app launch bench penguin -- /bin/sh -c "mkdir -p /usr/share/applications && printf '[Desktop Entry]\nType=Application\nName=True\nExec=/bin/true\n' >/usr/share/applications/bench-true.desktop" >/dev/null
sleep 2
vmtoolsctl container stop bench penguin || exit 1

start=() inside=() launch=() dbus=() stop=()
for round in $(seq "$rounds"); do
  t0=$(now)
  ci StartContainer ssa{sv} bench penguin 0 >/dev/null || { echo "round $round: StartContainer failed"; continue; }
  t1=$(now)
  # cicerone's log: "container penguin of VM bench: garcon ready on port 8890, 0.412 seconds after the start"
  in_ms=$(journalctl -u vmtools-cicerone --no-pager -o cat | grep 'garcon ready' | tail -n 1 \
    | sed -n 's/.*, \([0-9.]*\) seconds after the start/\1/p' | awk '{ printf "%d", $1 * 1000 }')
  for i in 1 2 3; do
    a=$(now); ci GetContainerToken ss bench penguin >/dev/null; b=$(now); dbus+=("$(ms "$a" "$b")")
    a=$(now); ci LaunchApplication ssa{sv} bench penguin 1 desktop_file_id s bench-true.desktop >/dev/null || echo "launch failed"
    b=$(now); launch+=("$(ms "$a" "$b")")
  done
  t2=$(now)
  ci StopContainer ssa{sv} bench penguin 0 >/dev/null || echo "round $round: StopContainer failed"
  t3=$(now)
  start+=("$(ms "$t0" "$t1")") inside+=("${in_ms:-0}") stop+=("$(ms "$t2" "$t3")")
  echo "round $round: StartContainer→ready ${start[-1]} ms (cicerone: ${inside[-1]} ms after maitred's StartContainer), LaunchApplication ${launch[-3]}/${launch[-2]}/${launch[-1]} ms, D-Bus only ${dbus[-1]} ms, StopContainer ${stop[-1]} ms"
done
vmtoolsctl stop bench >/dev/null 2>&1

echo
echo "| medians of $rounds rounds (testbed) | ms |"
echo "|---|---|"
echo "| StartContainer → ContainerStarted (busctl call) | $(printf '%s\n' "${start[@]}" | median) |"
echo "| the same inside cicerone (StartContainer to maitred → garcon's ContainerReady) | $(printf '%s\n' "${inside[@]}" | median) |"
echo "| LaunchApplication round trip (busctl → cicerone → garcon → spawn) | $(printf '%s\n' "${launch[@]}" | median) |"
echo "| a D-Bus round trip to cicerone alone (GetContainerToken, busctl) | $(printf '%s\n' "${dbus[@]}" | median) |"
echo "| StopContainer (SIGTERM, garcon's ContainerShutdown, reaped) | $(printf '%s\n' "${stop[@]}" | median) |"
