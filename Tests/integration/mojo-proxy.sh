#!/bin/bash
# mojo-proxy through a real VM, as a user gets it: `vmtoolsctl start --mojo-channel` makes
# concierge start the host's proxy (vmtools-mojo-proxy@VM, a hardened unit) and the guest's
# (through maitred, in the default image). A client in the guest (mojo-probe, copied in) and a
# service on the host exchange bytes, a pipe, a socket and regular files both ways; a channel
# whose host socket refuses ends the guest's connection; a restarted host proxy is linked again;
# StopVm stops the host's proxy.
source "$(dirname "$0")/lib.sh"
probe=/usr/lib/vmtools-testbed/bin/mojo-probe
work=$(mktemp -d)
mkdir -p /run/mojo-test
"$probe" serve /run/mojo-test/service.sock >"$work/service.log" 2>&1 &
service=$!
sleep 0.5

check "vmtoolsctl start with two mojo channels gives a running VM" \
  timeout 300 vmtoolsctl start mp --mem 512 \
    --mojo-channel 1:/run/mojo/service.sock:/run/mojo-test/service.sock \
    --mojo-channel 2:/run/mojo/nowhere.sock:/run/mojo-test/missing.sock
check "the host's end runs as its own hardened unit, with the VM's channels" \
  bash -c "systemctl is-active vmtools-mojo-proxy@mp && systemctl show -p CapabilityBoundingSet vmtools-mojo-proxy@mp | grep -qx 'CapabilityBoundingSet=cap_sys_admin' && grep -qx 'MOJO_CHANNELS=--channel 1:/run/mojo-test/service.sock --channel 2:/run/mojo-test/missing.sock' /run/vmtools/mp/mojo-proxy.env"
check "GetVmInfo lists the channels" \
  bash -c "busctl --system call org.vmtools.Concierge /org/vmtools/Concierge org.vmtools.Concierge GetVmInfo s mp | grep -q '\"mojo_channels\" a(uss) 2 1 \"/run/mojo/service.sock\" \"/run/mojo-test/service.sock\"'"
x() { timeout 120 vmtoolsctl shell mp -- "$@"; }
export -f x
check "the guest's proxy listens on both channels' sockets (it made their folder)" \
  bash -c "x ls -l /run/mojo | tee /dev/stderr | grep -q '^s.* service.sock' && x ls -l /run/mojo | grep -q '^s.* nowhere.sock'"
check "the probe is copied into the guest" \
  bash -c "x sh -c 'cat >/tmp/mojo-probe && chmod +x /tmp/mojo-probe' <$probe && x /tmp/mojo-probe 2>&1 | grep -q usage"
check "guest client ↔ host service: bytes, a pipe, a socket and regular files cross both ways" \
  bash -c "x /tmp/mojo-probe check /run/mojo/service.sock"
check "a channel whose host socket refuses ends the guest client's connection" \
  bash -c "x /tmp/mojo-probe refused /run/mojo/nowhere.sock"
check "the host's proxy said the guest linked, in its journal" \
  bash -c "journalctl -u vmtools-mojo-proxy@mp --no-pager | grep -q 'the guest linked'"
check "a restarted host proxy is linked again by the guest's, and the channel works again" \
  bash -c "systemctl restart vmtools-mojo-proxy@mp && for i in \$(seq 30); do [ \$(journalctl -u vmtools-mojo-proxy@mp --no-pager | grep -c 'the guest linked') -ge 2 ] && break; sleep 1; done; x /tmp/mojo-probe bench /run/mojo/service.sock 1 10"
echo "--- benchmark (one run; tools/bench-mojo measures properly)"
x /tmp/mojo-probe bench /run/mojo/service.sock 32 500 | sed 's/^/       | via the VM: /'
if [ "$failed" -gt 0 ]; then
  echo "--- mojo-proxy unit"; journalctl -u vmtools-mojo-proxy@mp --no-pager | tail -n 15
  echo "--- concierge"; journalctl -u vmtools-concierge --no-pager | tail -n 15
  echo "--- guest processes"; x ps 2>&1 | tail -n 15
  echo "--- guest console"; tr -d '\r' </run/vmtools/mp/serial.log | tail -n 25
  echo "--- vmm"; grep -v '^\[' /run/vmtools/mp/vmm.log | tail -n 10
fi
check "StopVm stops the host's proxy too" \
  bash -c "timeout 120 vmtoolsctl stop mp && for i in \$(seq 30); do systemctl is-active -q vmtools-mojo-proxy@mp || exit 0; sleep 1; done; exit 1"
check "StartVm refuses bad channels with InvalidArgument, naming them" \
  bash -c "! vmtoolsctl start bad --mojo-channel 1:relative.sock:/run/x.sock 2>$work/e1; grep -q \"guest socket 'relative.sock' must be an absolute path\" $work/e1 && ! busctl --system call org.vmtools.Concierge /org/vmtools/Concierge org.vmtools.Concierge StartVm 'sa{sv}' bad 1 mojo_channels 'a(uss)' 2 1 /a.sock /b.sock 1 /c.sock /d.sock 2>$work/e2; cat $work/e2; grep -q 'mojo channel 1 is given twice' $work/e2"
vmtoolsctl stop mp >/dev/null 2>&1
kill "$service" 2>/dev/null
rm -rf "$work"
finish
