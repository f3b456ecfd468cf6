#!/bin/bash
# A guest on the network through vmm's virtio-net and a host TAP: maitred's ConfigureNetwork
# gives the guest its /30 address (ARCHITECTURE.md's layout: host .25, guest .26) and default
# route, then ping works both ways and 8 MiB cross TCP each way intact (large frames, offloads).
# Also: the TAP passed as an inherited descriptor (--tap-fd), and bad --tap / --mac refused.
source "$(dirname "$0")/lib.sh"
image=/var/lib/vmtools/images/default
work=$(mktemp -d)
sock=$work/vsock.sock
tap=vmtap0
host_ip=100.115.92.25
guest_ip=100.115.92.26
mac=02:00:5e:10:00:26

ip tuntap add dev $tap mode tap vnet_hdr
ip addr add $host_ip/30 dev $tap
ip link set $tap up

vmtoolsctl guest ready --vsock "$sock" --timeout 240 >"$work/ready.txt" 2>&1 &
ready_pid=$!
sleep 0.5
vmm run --kernel $image/vmlinuz --initrd $image/initrd.img --no-console-input --params quiet --mem 512 --cpus 2 \
  --cid 3 --vsock "$sock" --tap $tap --mac $mac --socket "$work/ctl" --serial "file=$work/serial.log" \
  </dev/null >"$work/vmm.log" 2>&1 &
vmm_pid=$!
wait "$ready_pid"
check "the guest comes up with a virtio-net device (VmReady)" grep -q ready "$work/ready.txt"

x() { timeout 60 vmtoolsctl exec --vsock "$sock" "$@"; }
export -f x; export sock
check "the guest's eth0 has the MAC given to vmm" bash -c "[ \"\$(x -- cat /sys/class/net/eth0/address)\" = $mac ]"
check "ConfigureNetwork: eth0 gets $guest_ip/30 and a default route via $host_ip" \
  bash -c "timeout 60 vmtoolsctl guest configure-network --vsock $sock --interface eth0 --address $guest_ip --netmask 255.255.255.252 --gateway $host_ip --dns $host_ip && x -- ip -4 addr show eth0 | grep -q 'inet $guest_ip/30' && x -- ip route | grep -q 'default via $host_ip'"
check "the host pings the guest" busybox ping -c 3 -W 2 $guest_ip
check "the guest pings the host" bash -c "x -- ping -c 3 -W 2 $host_ip"
check "the guest's link reports up" bash -c "[ \"\$(x -- cat /sys/class/net/eth0/operstate)\" = up ]"

head -c 8M /dev/urandom >"$work/blob"
want=$(md5sum <"$work/blob" | cut -d' ' -f1)
# host → guest: the guest listens (busybox nc), the host sends.
timeout 90 vmtoolsctl shell --vsock "$sock" --no-tty -- sh -c 'nc -l -p 5000 | md5sum' >"$work/guest-md5" 2>&1 &
listener=$!
sleep 2
check "host → guest: 8 MiB over TCP arrive intact" bash -c "timeout 60 socat -u FILE:$work/blob TCP:$guest_ip:5000,retry=5; wait; for i in \$(seq 30); do kill -0 $listener 2>/dev/null || break; sleep 1; done; grep -q $want $work/guest-md5 || { cat $work/guest-md5; exit 1; }"
# guest → host: the host listens, the guest sends what it generated, with its md5.
socat -u TCP-LISTEN:5001,reuseaddr OPEN:"$work/from-guest",creat,trunc &
receiver=$!
sleep 1
gmd5=$(x -- sh -c "head -c 8388608 /dev/urandom >/tmp/blob && md5sum </tmp/blob | cut -d' ' -f1 && nc $host_ip 5001 </tmp/blob")
for i in $(seq 30); do kill -0 $receiver 2>/dev/null || break; sleep 1; done
check "guest → host: 8 MiB over TCP arrive intact" bash -c "echo guest \$(echo '$gmd5' | head -n1) host \$(md5sum <$work/from-guest | cut -d' ' -f1) \$(stat -c %s $work/from-guest) bytes; [ \"\$(echo '$gmd5' | head -n1)\" = \"\$(md5sum <$work/from-guest | cut -d' ' -f1)\" ]"
check "vmm status counts packets both ways" bash -c "vmm status $work/ctl | tee /dev/stderr | grep -Eq '\"tx_packets\":[1-9][0-9]*.*\"rx_packets\":[1-9]'"
check "Shutdown ends vmm with status 0" bash -c "timeout 60 vmtoolsctl guest shutdown --vsock $sock; for i in \$(seq 60); do kill -0 $vmm_pid 2>/dev/null || break; sleep 1; done; ! kill -0 $vmm_pid 2>/dev/null"
wait_exit "$vmm_pid" 5
check "vmm's exit status is 0" test "$?" -eq 0

# Bad input is refused before anything starts, with what was wrong.
check "a TAP name too long for an interface is refused with its name" bash -c "vmm run --kernel $image/vmlinuz --tap nosuchtapnameistoolong --mem 256 </dev/null 2>&1 | grep -q nosuchtapnameistoolong"
check "a multicast MAC is refused" bash -c "vmm run --kernel $image/vmlinuz --tap $tap --mac 01:00:5e:00:00:01 --mem 256 </dev/null 2>&1 | grep -qi mac"
check "--tap-fd with a descriptor that is not a TAP is refused" bash -c "vmm run --kernel $image/vmlinuz --tap-fd 3 --mem 256 3</dev/null </dev/null 2>&1 | grep -q 'cannot serve as a TAP'"
if [ "$failed" -gt 0 ]; then
  echo "--- guest console (tail)"; tr -d '\r' <"$work/serial.log" | tail -n 20
  echo "--- vmm log (tail)"; tail -n 10 "$work/vmm.log"
fi
kill "$vmm_pid" 2>/dev/null
ip link del $tap
rm -rf "$work"
finish
