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
  --mem 512 --cpus 2 --cid 3 --vsock "$sock" --serial "file=$work/serial.log" </dev/null >"$work/vmm.log" 2>&1 &
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
check "16 MiB written in the guest arrive intact on the host" \
  bash -c "x -- sh -c 'head -c 16777216 /dev/urandom >/mnt/shared/blob; md5sum /mnt/shared/blob' | cut -d' ' -f1 >$work/guest.md5 && [ \"\$(md5sum <$share/blob | cut -d' ' -f1)\" = \"\$(cat $work/guest.md5)\" ]"
check "a read-only mount of the same server refuses writes" \
  bash -c "g mount-9p --read-only 16384 /mnt/ro && [ \"\$(x -- cat /mnt/ro/docs/hello.txt)\" = changed ] && ! x -- touch /mnt/ro/nope 2>/dev/null && [ ! -e $share/nope ]"
check "Mount9P to a port with no server is a clear error, and maitred keeps serving" \
  bash -c "out=\$(g mount-9p 16999 /mnt/none 2>&1); echo \"\$out\"; echo \"\$out\" | grep -qi 'vsock port 16999' && x -- true"

timeout 60 vmtoolsctl guest shutdown --vsock "$sock" >/dev/null 2>&1
wait "$vmm_pid"
vmm_status=$?
check "the guest powers off with the share mounted (vmm exits 0), the server keeps running" \
  bash -c "[ $vmm_status -eq 0 ] && kill -0 $server"

if [ "$failed" -gt 0 ]; then
  echo "--- p9-serve"; tail -n 20 "$work/p9.log"
  echo "--- console"; tail -n 20 "$work/serial.log"
fi
kill "$server" 2>/dev/null
rm -rf "$work"
finish
