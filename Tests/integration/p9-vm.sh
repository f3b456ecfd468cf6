#!/bin/bash
# Core/P9 serving a VM over vsock, as seneschal will: the host's 9P server listens where vmm sends
# the guest's connections to host port 16384 (<vsock socket>_16384); maitred's Mount9P connects
# and mounts it with trans=fd. The guest sees the host's files and edits them, the host sees the
# edits; a read-only mount refuses writes; a port with no server gives a clear error.
source "$(dirname "$0")/lib.sh"
serve=/usr/lib/vmtools-testbed/bin/p9-serve
image=/var/lib/vmtools/images/default
work=$(mktemp -d)
sock=$work/vsock.sock
share=$work/share
mkdir -p "$share/docs" && echo "from the host" >"$share/docs/hello.txt"

"$serve" --socket "${sock}_16384" --root "$share" 2>"$work/p9.log" &
server=$!
vmtoolsctl guest ready --vsock "$sock" --timeout 240 >/dev/null 2>&1 &
ready=$!
sleep 0.5
vmm run --kernel "$image/vmlinuz" --initrd "$image/initrd.img" --no-console-input --params quiet \
  --mem 512 --cpus 2 --cid 3 --vsock "$sock" --socket "$work/ctl" --serial "file=$work/serial.log" \
  </dev/null >"$work/vmm.log" 2>&1 &
vmm_pid=$!
wait "$ready"
ready_status=$?
check "the guest is up (VmReady)" test "$ready_status" -eq 0

x() { timeout 60 vmtoolsctl exec --vsock "$sock" "$@"; }
g() { timeout 60 vmtoolsctl guest "$1" --vsock "$sock" "${@:2}"; }
export -f x g; export sock share

check "Mount9P mounts the host's server (vsock port 16384, trans=fd) at /mnt/shared" \
  bash -c "g mount-9p 16384 /mnt/shared && x -- grep -q ' /mnt/shared 9p ' /proc/mounts"
check "the guest reads the host's file" bash -c "[ \"\$(x -- cat /mnt/shared/docs/hello.txt)\" = 'from the host' ]"
check "the guest edits and creates files; the host sees them" \
  bash -c "x -- sh -c 'echo edited >>/mnt/shared/docs/hello.txt; mkdir -p /mnt/shared/new/dir; echo guest >/mnt/shared/new/dir/f' && [ \"\$(tail -n 1 $share/docs/hello.txt)\" = edited ] && [ \"\$(cat $share/new/dir/f)\" = guest ]"
check "host edits show in the guest at once (cache=none)" \
  bash -c "echo changed >$share/docs/hello.txt && [ \"\$(x -- cat /mnt/shared/docs/hello.txt)\" = changed ]"
# Reads of a whole msize (256 KiB): with cache=none each read is a round trip to the server, and
# 4 KiB ones (md5sum's) take minutes in the nested testbed.
check "16 MiB written in the guest arrive intact on the host, and read back intact" \
  bash -c "x -- sh -c 'head -c 16777216 /dev/urandom >/tmp/blob && md5sum </tmp/blob && dd if=/tmp/blob of=/mnt/shared/blob bs=256k 2>/dev/null && dd if=/mnt/shared/blob bs=256k 2>/dev/null | md5sum && rm /tmp/blob' | cut -d' ' -f1 >$work/guest.md5; cat $work/guest.md5; [ \$(wc -l <$work/guest.md5) = 2 ] && [ \$(sort -u $work/guest.md5 | wc -l) = 1 ] && [ \"\$(md5sum <$share/blob | cut -d' ' -f1)\" = \"\$(head -n 1 $work/guest.md5)\" ]"
check "a read-only mount of the same server refuses writes" \
  bash -c "g mount-9p --read-only 16384 /mnt/ro && [ \"\$(x -- cat /mnt/ro/docs/hello.txt)\" = changed ] && ! x -- touch /mnt/ro/nope 2>/dev/null && [ ! -e $share/nope ]"
check "Mount9P to a port with no server is a clear error, and maitred keeps serving" \
  bash -c "out=\$(g mount-9p 16999 /mnt/none 2>&1); echo \"\$out\"; echo \"\$out\" | grep -qi 'vsock port 16999' && x -- true"

# Before Shutdown: what the VMM's devices looked like, should anything above have failed.
[ "$failed" -eq 0 ] || vmm status "$work/ctl" >"$work/status.json" 2>&1
timeout 60 vmtoolsctl guest shutdown --vsock "$sock" >/dev/null 2>&1
wait_exit "$vmm_pid" 90
vmm_status=$?
check "the guest powers off with the share mounted (vmm exits 0), the server keeps running" \
  bash -c "[ $vmm_status -eq 0 ] && kill -0 $server"

if [ "$failed" -gt 0 ]; then
  echo "--- p9-serve"; tail -n 20 "$work/p9.log"
  echo "--- console"; tr -d '\r' <"$work/serial.log" | tail -n 20
  echo "--- vmm log (tail)"; grep -v '^\[' "$work/vmm.log" | tail -n 15
  echo "--- vmm status before Shutdown"; tr ',' '\n' <"$work/status.json" | grep -E 'vsock|needs_reset|avail|used|control|replies|state' | head -n 30
fi
kill "$server" 2>/dev/null
rm -rf "$work"
finish
