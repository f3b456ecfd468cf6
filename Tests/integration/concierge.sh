#!/bin/bash
# concierge end to end on the testbed's system bus, as a user drives it: D-Bus activation starts
# vmtools-concierge.service (systemd, Type=notify, hardened); StartVm with the default image
# gives a configured VM (VmStarted, CID, /30 on a TAP, maitred reachable); the guest and host
# ping each other; ListVms/GetVmInfo agree; bad calls and strangers get named errors; a
# concierge killed with its VM running re-adopts it; StopVm frees CID, subnet and TAP; stopping
# the unit stops the VMs. vmtoolsctl does the same for users (root and group vmtools); a
# restart keeps the VMs; a crashed vmm is noticed; guests reach beyond the host through NAT; each
# VM gets a 9P server at seneschal mounted at /mnt/shared, and `vmtoolsctl share` fills it.
source "$(dirname "$0")/lib.sh"
dest=org.vmtools.Concierge
path=/org/vmtools/Concierge
# StartVm waits for the guest agent: on a loaded 2-core CI host that can pass busctl's 25 s default.
c() { busctl --system --timeout=180 call "$dest" "$path" "$dest" "$@"; }
export -f c
export dest path
work=$(mktemp -d)
# What tools/install does on a live host (the testbed's install is staged offline): make the
# vmtools group and let dbus-daemon see it in its policy.
systemd-sysusers /etc/sysusers.d/vmtools.conf && systemctl reload dbus
useradd --no-create-home --groups vmtools vmuser 2>/dev/null
as_user() { setpriv --reuid=vmuser --regid=vmuser --init-groups "$@"; }
export -f as_user

busctl --system monitor --match "type='signal',interface='$dest'" >"$work/signals" 2>&1 &
monitor=$!
sleep 1

check "vmtoolsctl disk create (D-Bus activation starts concierge) makes a sparse disk image" \
  bash -c "vmtoolsctl disk create scratch --size 64M && vmtoolsctl disk list | grep -q '^scratch  *64M '"
started=$(date +%s%N)
check "StartVm boots the default image to a configured VM, with the disk writable" \
  bash -c "c StartVm 'sa{sv}' demo 3 memory_mib u 512 cpus u 2 writable_disks as 1 scratch >$work/info; s=\$?; cat $work/info; [ \$s -eq 0 ]"
echo "       | StartVm took $(( ($(date +%s%N) - started) / 1000000 )) ms"
# A field of busctl's a{sv} output: `"cid" u 3` → 3 (no value here has spaces).
field() { grep -o "\"$2\" [a-z] [^ ]*" "$1" | head -n 1 | cut -d' ' -f3 | tr -d '"'; }
info() { field "$work/info" "$1"; }
cid=$(info cid); ip=$(info ipv4); host=$(info host_ipv4); tap=$(info tap); maitred=$(info maitred_socket)
pid=$(info pid)
check "the unit runs under systemd with its hardening" \
  bash -c "systemctl is-active vmtools-concierge && systemctl show -p CapabilityBoundingSet vmtools-concierge | grep -qx 'CapabilityBoundingSet=cap_net_admin'"
check "the VM got CID 3, the first /30 (100.115.92.26) and a TAP with the host's end" \
  bash -c "[ '$cid' = 3 ] && [ '$ip' = 100.115.92.26 ] && [ '$host' = 100.115.92.25 ] && ip -4 -o addr show dev '$tap' | grep -q 'inet 100.115.92.25/30'"
check "VmStarting and VmStarted were signalled" bash -c "grep -q VmStarting $work/signals && grep -q VmStarted $work/signals"
x() { timeout 60 vmtoolsctl exec --socket "$maitred" "$@"; }
export -f x; export maitred
check "maitred in the VM answers through concierge's per-VM socket; the hostname is the VM's name" \
  bash -c "[ \"\$(x -- hostname)\" = demo ]"
check "the guest pings the host over the TAP, and the host pings the guest" \
  bash -c "x -- ping -c 2 -W 5 $host && busybox ping -c 2 -W 5 $ip"
check "NAT: the guest reaches an address beyond the host (a namespace with no route back to the VMs)" \
  bash -c "systemctl is-active vmtools-network && ip netns add outside && ip link add vmt-out type veth peer name vmt-in netns outside && ip addr add 203.0.113.1/24 dev vmt-out && ip link set vmt-out up && ip -n outside addr add 203.0.113.2/24 dev vmt-in && ip -n outside link set vmt-in up && x -- ping -c 2 -W 5 203.0.113.2"
check "the guest's clock was set from the host's" bash -c "g=\$(x -- date +%s); h=\$(date +%s); [ \$((h - g)) -lt 30 ] && [ \$((g - h)) -lt 30 ]"
check "ListVms, GetVmInfo and the RunningVms property agree" \
  bash -c "c ListVms | grep -q '\"name\" s \"demo\"' && c GetVmInfo s demo | grep -q '\"cid\" u 3' && busctl --system get-property $dest $path $dest RunningVms | grep -qx 'as 1 \"demo\"'"

check "vmtoolsctl: list and info show demo; shell demo -- uname -r runs in the guest" \
  bash -c "vmtoolsctl list | tee /dev/stderr | grep -q '^demo  *running  *3 ' && k=\$(timeout 60 vmtoolsctl shell demo -- uname -r) && vmtoolsctl info demo | tee /dev/stderr | grep -q \"^kernel  *\$k\$\""
check "a member of group vmtools may use vmtoolsctl and the shell; the vsock and control sockets stay root's" \
  bash -c "[ \"\$(as_user timeout 60 vmtoolsctl shell demo -- echo hi)\" = hi ] && as_user vmtoolsctl list | grep -q '^demo ' && socat -u /dev/null UNIX-CONNECT:/run/vmtools/demo/control.sock && ! as_user socat -u /dev/null UNIX-CONNECT:/run/vmtools/demo/vsock.sock 2>/dev/null && ! as_user socat -u /dev/null UNIX-CONNECT:/run/vmtools/demo/control.sock 2>/dev/null"
check "the guest sees the disk (64 MiB); it cannot be destroyed or given to a second VM while demo uses it" \
  bash -c "[ \"\$(x -- cat /sys/block/vda/size)\" = 131072 ] && vmtoolsctl disk destroy scratch 2>&1 | grep -q 'in use by VM demo (Busy)' && c StartVm 'sa{sv}' other 1 disks as 1 scratch 2>&1 | grep -q 'in use by VM demo'"
mkdir -p /srv/host-share/docs /srv/ro-share && echo from-host >/srv/host-share/docs/hello.txt && echo ro >/srv/ro-share/f
check "the VM got a shared folder: a 9P server at seneschal, mounted by maitred at /mnt/shared" \
  bash -c "[ '$(info shared_folder)' = /mnt/shared ] && [ '$(info seneschal_handle)' -gt 0 ] && x -- grep -q ' /mnt/shared 9p ' /proc/mounts"
check "vmtoolsctl share --writable: the guest reads and edits the host's folder; the host sees the edit" \
  bash -c "[ \"\$(vmtoolsctl share demo /srv/host-share/docs --writable)\" = /mnt/shared/docs ] && [ \"\$(x -- cat /mnt/shared/docs/hello.txt)\" = from-host ] && x -- sh -c 'echo from-guest >/mnt/shared/docs/new.txt' && [ \"\$(cat /srv/host-share/docs/new.txt)\" = from-guest ]"
check "a read-only share refuses the guest's writes; shares lists both; unshare takes it away" \
  bash -c "vmtoolsctl share demo /srv/ro-share --as ro && [ \"\$(x -- cat /mnt/shared/ro/f)\" = ro ] && ! x -- sh -c 'echo no >/mnt/shared/ro/f' && [ \"\$(cat /srv/ro-share/f)\" = ro ] && vmtoolsctl shares demo | tee /dev/stderr | grep -q '^/mnt/shared/ro  *ro  */srv/ro-share\$' && vmtoolsctl unshare demo /mnt/shared/ro && ! x -- test -e /mnt/shared/ro"
check "a vmtools member cannot share through a VM root started (its server serves as root)" \
  bash -c "as_user vmtoolsctl share demo /srv/ro-share 2>&1 | grep -q 'may use only its own servers (AccessDenied)'"
check "concierge's journal entries are structured (LOGGER, CODE_FILE, PRIORITY from its swift-log handler)" \
  bash -c "journalctl -u vmtools-concierge -o export --no-pager | grep -a -q '^LOGGER=concierge\$' && journalctl -u vmtools-concierge -o export --no-pager | grep -a -q '^CODE_FILE=.*Concierge.swift\$' && journalctl -u vmtools-concierge -p info -o export --no-pager | grep -a -q '^MESSAGE=serving org.vmtools.Concierge'"
check "bad input: an unknown option is InvalidArgs, a second demo is AlreadyExists, a missing VM NotFound" \
  bash -c "c StartVm 'sa{sv}' x 1 bogus s y 2>&1 | grep -q 'unknown option bogus' && c StartVm 'sa{sv}' demo 0 2>&1 | grep -q 'already exists' && c StopVm s nope 2>&1 | grep -q 'no VM named nope'"
check "a caller who is not root (nor in group vmtools) is refused by the bus policy" \
  bash -c "out=\$(setpriv --reuid=65534 --regid=65534 --clear-groups busctl --system call $dest $path $dest ListVms 2>&1); echo \"\$out\"; echo \"\$out\" | grep -qi 'denied'"

check "systemctl restart with a VM running: the VM keeps running, the new concierge re-adopts it" \
  bash -c "systemctl restart vmtools-concierge && kill -0 $pid && c ListVms | grep -q '\"name\" s \"demo\"' && journalctl -u vmtools-concierge --no-pager | grep -q 'for a restart: leaving 1 VMs running' && [ \"\$(x -- hostname)\" = demo ]"
check "concierge killed with its VM running: the restarted concierge re-adopts the VM" \
  bash -c "systemctl kill --kill-whom=main -s KILL vmtools-concierge; sleep 2; kill -0 $pid && c ListVms | grep -q '\"name\" s \"demo\"' && journalctl -u vmtools-concierge --no-pager | grep -q 're-adopted VM demo'"
check "vmtoolsctl stop demo powers the guest off and frees everything: vmm gone, TAP gone; the disk can go" \
  bash -c "vmtoolsctl stop demo && ! kill -0 $pid 2>/dev/null && ! ip link show '$tap' 2>/dev/null && c ListVms | grep -qx 'aa{sv} 0' && grep -q 'VmStopped' $work/signals && vmtoolsctl disk destroy scratch"
check "the stopped VM's 9P server is gone from seneschal" \
  bash -c "busctl --system call org.vmtools.Seneschal /org/vmtools/Seneschal org.vmtools.Seneschal ListServers | grep -qx 'aa{sv} 0'"
check "a second VM gets a new CID (CIDs go round) and the freed /30" \
  bash -c "c StartVm 'sa{sv}' two 1 memory_mib u 512 >$work/two && grep -q '\"cid\" u 4 ' $work/two && grep -q '\"ipv4\" s \"100.115.92.26\"' $work/two"
two_pid=$(field "$work/two" pid)
check "kill -9 of a VM's vmm: VmStopped(crashed) at once, its TAP freed" \
  bash -c "kill -9 ${two_pid:-0}; for i in \$(seq 50); do c ListVms | grep -q '\"two\"' || break; sleep 0.2; done; ! c ListVms | grep -q '\"two\"' && grep -q 'STRING \"crashed\"' $work/signals && ! ip link show '$tap' 2>/dev/null"
c StartVm 'sa{sv}' three 1 memory_mib u 512 >$work/three
three_pid=$(field "$work/three" pid)
check "stopping the unit stops its VMs cleanly" \
  bash -c "[ -n '$three_pid' ] && systemctl stop vmtools-concierge && ! kill -0 ${three_pid:-0} 2>/dev/null && journalctl -u vmtools-concierge --no-pager | grep -q 'VM three stopped (service-shutdown)'"

echo "       | $(systemd-analyze security --no-pager vmtools-concierge.service 2>/dev/null | tail -n 1)"
if [ "$failed" -gt 0 ]; then
  echo "--- concierge's journal"; journalctl -u vmtools-concierge --no-pager | tail -n 30
  echo "--- signals"; tail -n 20 "$work/signals"
  for f in /run/vmtools/*/vmm.log /run/vmtools/*/serial.log; do [ -f "$f" ] && { echo "--- $f"; tail -n 10 "$f"; }; done
fi
kill "$monitor" 2>/dev/null
ip netns del outside 2>/dev/null
rm -rf "$work"
finish
