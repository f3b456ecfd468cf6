#!/bin/bash
# Core/P9 against the real Linux 9P client (9p2000.L over trans=unix): a file-system workout done
# once in a plain host folder and once through the mount must leave the same tree; edits cross
# both ways (cache=none); large offsets, a 10k-entry directory, xattrs, concurrent writers; a
# read-only export refuses every change; links and renames cannot reach outside the export.
source "$(dirname "$0")/lib.sh"
serve=/usr/lib/vmtools-testbed/bin/p9-serve
work=$(mktemp -d)
# The export and the reference folder on ext4 (the testbed's own / is a ramfs, without user.*
# xattrs), a sparse image on a loop device.
truncate -s 8G "$work/fs.img" && mkfs.ext4 -q -F "$work/fs.img" && mkdir "$work/fs" && mount -o loop "$work/fs.img" "$work/fs"
share=$work/fs/share ref=$work/fs/ref mnt=$work/mnt ro_export=$work/fs/ro ro=$work/ro-mnt
mkdir -p "$share" "$ref" "$mnt" "$ro_export" "$ro"
export work mnt ref
opts=trans=unix,version=9p2000.L,cache=none,access=any,msize=1048576

"$serve" --socket "$work/rw.sock" --root "$share" 2>"$work/rw.log" &
rw_server=$!
"$serve" --socket "$work/ro.sock" --root "$ro_export" --read-only 2>"$work/ro.log" &
ro_server=$!
for _ in $(seq 100); do [ -S "$work/rw.sock" ] && [ -S "$work/ro.sock" ] && break; sleep 0.1; done

check "the Linux client mounts the export (9p2000.L, trans=unix)" \
  bash -c "modprobe 9p && mount -t 9p -o $opts '$work/rw.sock' '$mnt' && mount | grep -q ' $mnt type 9p'"

check "a workout through the mount leaves the same tree as on a local folder" \
  bash -c "workout '$ref' >'$work/ref.tree' && workout '$mnt' >'$work/mnt.tree' && diff '$work/ref.tree' '$work/mnt.tree' && (cd '$share' && find . -mindepth 1 -printf '%P %y %s %m %n %l\n' | LC_ALL=C sort) | diff '$work/ref.tree' -"
check "content written through the mount is on the host, and host edits show through (cache=none)" \
  bash -c "[ \"\$(cat '$share/a/b/g')\" = \"\$(printf 'hello\nbye')\" ] && echo host-edit >'$share/h1' && [ \"\$(cat '$mnt/h2')\" = host-edit ] && [ \"\$(cat '$mnt/link')\" = \"\$(cat '$share/a/b/g')\" ]"
check "a 64 MiB file written through the mount reads back identical on both sides" \
  bash -c "head -c 64M /dev/urandom >'$work/blob' && cp '$work/blob' '$mnt/blob' && cmp '$work/blob' '$share/blob' && cmp '$work/blob' '$mnt/blob'"
check "offsets beyond 4 GiB: a sparse write at 5 GiB lands there and reads back" \
  bash -c "head -c 4096 /dev/urandom >'$work/page' && dd if='$work/page' of='$mnt/sparse' bs=4096 seek=1310720 conv=notrunc status=none && [ \$(stat -c %s '$share/sparse') = 5368713216 ] && dd if='$mnt/sparse' bs=4096 skip=1310720 count=1 status=none | cmp - '$work/page' && [ \$(stat -c %s '$mnt/sparse') = 5368713216 ]"
check "a directory of 10 000 entries lists whole through the mount" \
  bash -c "mkdir '$share/many' && (cd '$share/many' && seq 10000 | xargs touch) && [ \$(ls '$mnt/many' | wc -l) = 10000 ] && [ \$(find '$mnt/many' -type f | wc -l) = 10000 ]"
check "user.* xattrs: set, read and listed through the mount, seen on the host" \
  bash -c "setfattr -n user.color -v blue '$mnt/h1' && [ \"\$(getfattr --only-values -n user.color '$mnt/h1')\" = blue ] && [ \"\$(getfattr --only-values -n user.color '$share/h1')\" = blue ] && getfattr -d '$mnt/h1' | grep -q user.color && setfattr -x user.color '$mnt/h1' && ! getfattr -n user.color '$share/h1' 2>/dev/null"
# 8 writers at once: each its own file, and its own 1 MiB region of one shared file.
writers() {
  local i letters=ABCDEFGH
  for i in 1 2 3 4 5 6 7 8; do
    (seq $((i * 100000)) $((i * 100000 + 20000)) >"$mnt/w$i"
     head -c 1M /dev/zero | tr '\0' "${letters:i-1:1}" |
       dd of="$mnt/shared" bs=1M seek=$((i - 1)) iflag=fullblock conv=notrunc status=none) &
  done
  wait
  for i in 1 2 3 4 5 6 7 8; do
    seq $((i * 100000)) $((i * 100000 + 20000)) | cmp - "$share/w$i" || return 1
    region() { dd if="$share/shared" bs=1M skip=$((i - 1)) count=1 status=none; }
    [ "$(region | wc -c)" = 1048576 ] && [ "$(region | tr -d "${letters:i-1:1}" | wc -c)" = 0 ] || return 1
  done
}
export -f writers
export share
check "8 concurrent writers (own files and own regions of one file) all land intact" bash -c writers

echo outside >"$work/outside"
check "no way out: a symlink to a file outside is stored as a link (the server never follows it), the file is unchanged; a hard link across is refused" \
  bash -c "ln -s '$work/outside' '$mnt/sym' && [ \"\$(stat -c %F '$share/sym')\" = 'symbolic link' ] && [ \"\$(readlink '$mnt/sym')\" = '$work/outside' ] && ! ln '$work/outside' '$mnt/in' 2>/dev/null && [ \"\$(cat '$work/outside')\" = outside ] && [ ! -e '$share/in' ]"

echo keep >"$ro_export/kept"
check "a read-only export mounts and reads" \
  bash -c "mount -t 9p -o $opts '$work/ro.sock' '$ro' && [ \"\$(cat '$ro/kept')\" = keep ]"
export ro ro_export
check "a read-only export refuses create, truncate, chmod, rename, unlink, mkdir, symlink, xattr and writes (EROFS)" \
  bash -c "ro_refuses '$ro' '$ro_export'"

check "unmount and mount again: the server serves a new session" \
  bash -c "umount '$mnt' && mount -t 9p -o $opts '$work/rw.sock' '$mnt' && [ -f '$mnt/a/b/c/dst' ]"
check "the servers survived every session" bash -c "kill -0 $rw_server && kill -0 $ro_server"

if [ "$failed" -gt 0 ]; then
  for f in "$work"/*.log; do echo "--- $f"; tail -n 20 "$f"; done
  dmesg | grep -i 9p | tail -n 10
fi
umount "$mnt" "$ro" 2>/dev/null
kill "$rw_server" "$ro_server" 2>/dev/null
umount "$work/fs" 2>/dev/null
rm -rf "$work"
finish
