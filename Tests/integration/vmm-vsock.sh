#!/bin/bash
# vmm's virtio-vsock with the stock Debian kernel, through its host Unix socket (Firecracker's
# convention): host → guest with `CONNECT <port>`, guest → host to <socket>_<port>, a refused
# port, 8 MiB each way checked byte for byte, many streams at once, and a client that goes away.
# socat runs on both sides (copied into the guest's initramfs).
source "$(dirname "$0")/lib.sh"
work=$(mktemp -d)

cat >"$work/init" <<'INIT'
#!/bin/sh
export PATH=/usr/bin:/bin:/sbin
mount -t proc proc /proc
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
for m in virtio_pci vmw_vsock_virtio_transport; do modprobe $m || echo "GUEST-ERROR modprobe $m"; done
# Servers for the host: an echo on 1234, a sink that prints the md5 of what it got on 1235.
socat VSOCK-LISTEN:1234,reuseaddr,fork,backlog=64 EXEC:cat &
socat -u VSOCK-LISTEN:1235,reuseaddr - | md5sum | sed 's/^/GUEST-SINK-MD5 /;s/ *-$//' &
sleep 1
echo GUEST-LISTENING
# Guest → host.
echo from-the-guest | socat -u - VSOCK-CONNECT:2:5000 && echo GUEST-SENT
if socat -u - VSOCK-CONNECT:2:5999 </dev/null 2>/tmp/refused; then echo "GUEST-REFUSED no"; else echo "GUEST-REFUSED yes $(cat /tmp/refused)"; fi
dd if=/dev/urandom of=/tmp/blob bs=1M count=8 2>/dev/null
echo "GUEST-BLOB-MD5 $(md5sum </tmp/blob | cut -d' ' -f1)"
socat -u FILE:/tmp/blob VSOCK-CONNECT:2:5001 && echo GUEST-BLOB-SENT
while true; do sleep 1; done
INIT
INITRAMFS_BINARIES=$(command -v socat) make_initramfs "$work/initrd.gz" "$work/init" virtio_pci vmw_vsock_virtio_transport

sock=$work/vsock.sock
# Host listeners for guest-initiated streams.
socat -u UNIX-LISTEN:"${sock}_5000" CREATE:"$work/from-guest.txt" &
socat -u UNIX-LISTEN:"${sock}_5001" CREATE:"$work/from-guest.blob" &
blob_listener=$!
sleep 0.5

vmm run --kernel "$GUEST_KERNEL" --initrd "$work/initrd.gz" --no-console-input --params quiet --mem 512 \
  --cid 3 --vsock "$sock" --socket "$work/ctl" --serial "file=$work/serial.log" </dev/null >"$work/vmm.log" 2>&1 &
vmm_pid=$!
# The guest's console log, without the CRs of its tty (never edit the live file: vmm writes on).
guest_log() { tr -d '\r' <"$work/serial.log"; }
for i in $(seq 120); do guest_log 2>/dev/null | grep -q GUEST-BLOB-SENT && break; sleep 1; done
guest_log >"$work/guest.log"
# The guest's socat is done when its data is in flight; the host's is done when all arrived.
for i in $(seq 30); do kill -0 "$blob_listener" 2>/dev/null || break; sleep 1; done

check "the guest's vsock driver loads" bash -c "grep -q GUEST-LISTENING $work/guest.log && ! grep -q GUEST-ERROR $work/guest.log"
check "guest → host: a stream to CID 2 port 5000 reaches <socket>_5000" bash -c "grep -q GUEST-SENT $work/guest.log && grep -qx from-the-guest $work/from-guest.txt"
check "guest → host: a port with no listener is refused, not hung" bash -c "grep 'GUEST-REFUSED' $work/guest.log; grep -q 'GUEST-REFUSED yes' $work/guest.log"
check "guest → host: 8 MiB arrive byte for byte" bash -c "want=\$(sed -n 's/^GUEST-BLOB-MD5 //p' $work/guest.log); got=\$(md5sum <$work/from-guest.blob | cut -d' ' -f1); echo \$want \$got \$(stat -c %s $work/from-guest.blob) bytes; [ -n \"\$want\" ] && [ \"\$want\" = \"\$got\" ]"

echo_once() { # echo_once TEXT [WAIT]: CONNECT 1234, send TEXT, print what comes back within WAIT s
  (printf 'CONNECT 1234\n%s\n' "$1"; sleep "${2:-1}") | timeout 20 socat -t 3 - UNIX-CONNECT:"$sock"
}
check "host → guest: CONNECT 1234 is answered OK <port> with a port from 2^30" bash -c "$(declare -f echo_once); sock=$sock; echo_once ping | tee /dev/stderr | head -n 1 | grep -Eq '^OK (107374[0-9]{4}|1[0-9]{9,})$'"
check "host → guest: bytes go through the guest's echo server and back" bash -c "$(declare -f echo_once); sock=$sock; echo_once hello-through-vsock | grep -qx hello-through-vsock"
head -c 8M /dev/urandom >"$work/to-guest.blob"
(printf 'CONNECT 1235\n'; cat "$work/to-guest.blob") | timeout 60 socat -u - UNIX-CONNECT:"$sock" >/dev/null
for i in $(seq 30); do guest_log | grep -q GUEST-SINK-MD5 && break; sleep 1; done
guest_log >"$work/guest.log"
check "host → guest: 8 MiB arrive byte for byte" bash -c "want=\$(md5sum <$work/to-guest.blob | cut -d' ' -f1); grep GUEST-SINK-MD5 $work/guest.log; grep -q \"GUEST-SINK-MD5 \$want\" $work/guest.log"
check "host → guest: a port where the guest does not listen gets no OK, and the client is closed" bash -c "out=\$( (printf 'CONNECT 4321\n'; sleep 2) | timeout 10 socat - UNIX-CONNECT:$sock); echo \"[\$out]\"; [ -z \"\$out\" ]"
check "a bad CONNECT line gets an error and the client is closed" bash -c "(printf 'HELLO\n'; sleep 2) | timeout 10 socat - UNIX-CONNECT:$sock | grep -q '^ERROR'"
check "16 streams at once each get their own echo" bash -c "$(declare -f echo_once); sock=$sock; for i in \$(seq 16); do (echo_once stream-\$i 4 >$work/multi-\$i.out) & done; wait; for i in \$(seq 16); do grep -qx stream-\$i $work/multi-\$i.out || { echo \"missing \$i: [\$(cat $work/multi-\$i.out)]\"; exit 1; }; done"
# A client that vanishes mid-stream must not take the VM down.
(printf 'CONNECT 1234\n'; head -c 1M /dev/zero) | timeout 5 socat -u - UNIX-CONNECT:"$sock" >/dev/null &
sleep 0.2; kill $! 2>/dev/null
sleep 1
check "vmm survives clients that disappear, and still serves new streams" bash -c "$(declare -f echo_once); sock=$sock; kill -0 $vmm_pid && echo_once still-alive | grep -qx still-alive"
check "vmm stops cleanly and removes its vsock socket" bash -c "vmm stop $work/ctl >/dev/null; for i in \$(seq 30); do kill -0 $vmm_pid 2>/dev/null || break; sleep 1; done; ! kill -0 $vmm_pid 2>/dev/null && [ ! -e $sock ]"
wait_exit "$vmm_pid" 5
check "vmm's exit status is 0" test "$?" -eq 0
check "--cid without --vsock is refused" bash -c "! vmm run --kernel $GUEST_KERNEL --cid 3 2>&1 </dev/null | grep -q 'go together'; vmm run --kernel $GUEST_KERNEL --cid 3 2>&1 </dev/null | grep -q 'go together'"
check "CID 2 (the host's) is refused" bash -c "vmm run --kernel $GUEST_KERNEL --cid 2 --vsock $work/x.sock 2>&1 </dev/null | grep -q 'guest CID 2'"
cat "$work/vmm.log" | grep -v '^\[' | tail -5
kill %1 %2 2>/dev/null
rm -rf "$work"
finish
