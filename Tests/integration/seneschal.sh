#!/bin/bash
# seneschal on the testbed's system bus, with the real Linux 9P client: D-Bus activation starts
# vmtools-seneschal.service; StartServer runs a seneschal-server confined to a mount namespace
# holding only its shares (no capabilities, seccomp, the caller's user); SharePath mounts a
# folder into it: writable shares pass the file-system workout, read-only ones refuse every
# change, the server's root holds nothing else, UnsharePath and StopServer take shares away.
# Users of group vmtools share only what they own, through servers that run as them.
source "$(dirname "$0")/lib.sh"
dest=org.vmtools.Seneschal
path=/org/vmtools/Seneschal
s() { busctl --system call "$dest" "$path" "$dest" "$@"; }
export -f s
export dest path
work=$(mktemp -d)
systemd-sysusers /etc/sysusers.d/vmtools.conf && systemctl reload dbus
useradd --create-home --groups vmtools shareuser 2>/dev/null
as_user() { setpriv --reuid=shareuser --regid=shareuser --init-groups "$@"; }
export -f as_user
# The shares on ext4 (the testbed's / is a ramfs, without user.* xattrs).
truncate -s 2G "$work/fs.img" && mkfs.ext4 -q -F "$work/fs.img" && mkdir "$work/fs" && mount -o loop "$work/fs.img" "$work/fs"
data=$work/fs/data ref=$work/fs/ref ro_export=$work/fs/ro mnt=$work/mnt
mkdir -p "$data" "$ref" "$ro_export" "$mnt"
echo keep >"$ro_export/kept"
echo outside >"$work/fs/outside"
export work data ref ro_export mnt
opts=trans=unix,version=9p2000.L,cache=none,access=any,msize=1048576
handle_of() { grep -o '^u [0-9]*' | cut -d' ' -f2; }

check "StartServer (D-Bus activation starts seneschal) returns a handle; the server listens" \
  bash -c "s StartServer 'a{sv}' 1 socket s $work/9p.sock | tee $work/start && [ -S $work/9p.sock ] && systemctl is-active vmtools-seneschal"
handle=$(handle_of <"$work/start")
pid=$(busctl --system --json=short call "$dest" "$path" "$dest" ListServers | grep -o '"pid":{"type":"u","data":[0-9]*' | grep -o '[0-9]*$' | head -n 1)
echo "       | server $handle, pid $pid, $(grep VmRSS /proc/$pid/status | tr -s ' \t' ' ')"
check "the server is confined: no capabilities, no_new_privs, seccomp, its own mount namespace" \
  bash -c "grep -qx 'CapEff:	0000000000000000' /proc/$pid/status && grep -qx 'NoNewPrivs:	1' /proc/$pid/status && grep -qx 'Seccomp:	2' /proc/$pid/status && [ \"\$(readlink /proc/$pid/ns/mnt)\" != \"\$(readlink /proc/1/ns/mnt)\" ]"
check "SharePath shares a folder writable and one read-only, under the names asked for" \
  bash -c "s SharePath 'usa{sv}' $handle $data 2 writable b true name s docs | grep -qx 's \"/docs\"' && s SharePath 'usa{sv}' $handle $ro_export 1 name s ro | grep -qx 's \"/ro\"'"
check "the server's root holds only its shares (and /proc); nothing else of the host" \
  bash -c "[ \"\$(ls /proc/$pid/root | tr '\n' ' ')\" = 'proc shares ' ] && [ \"\$(ls /proc/$pid/root/shares | tr '\n' ' ')\" = 'docs ro ' ]"
check "the Linux client mounts the server (trans=unix) and sees exactly the shares" \
  bash -c "modprobe 9p && mount -t 9p -o $opts $work/9p.sock $mnt && [ \"\$(ls $mnt | tr '\n' ' ')\" = 'docs ro ' ] && [ \"\$(cat $mnt/ro/kept)\" = keep ]"
check "a workout in the writable share leaves the same tree as in a local folder, on the host too" \
  bash -c "workout $ref >$work/ref.tree && workout $mnt/docs >$work/mnt.tree && diff $work/ref.tree $work/mnt.tree && (cd $data && find . -mindepth 1 -printf '%P %y %s %m %n %l\n' | LC_ALL=C sort) | diff $work/ref.tree -"
check "16 MiB written through the share arrive intact; xattrs work" \
  bash -c "head -c 16M /dev/urandom >$work/blob && cp $work/blob $mnt/docs/blob && cmp $work/blob $data/blob && setfattr -n user.k -v v $mnt/docs/blob && [ \"\$(getfattr --only-values -n user.k $data/blob)\" = v ]"
check "the read-only share refuses every change (EROFS) and nothing changes on the host" \
  bash -c "ro_refuses $mnt/ro $ro_export"
check "no way out: nothing can be added beside the shares; a hard link to an outside file is refused" \
  bash -c "! mkdir $mnt/new 2>/dev/null && ! touch $mnt/new 2>/dev/null && ! ln $work/fs/outside $mnt/docs/in 2>/dev/null && [ ! -e $data/in ] && [ \"\$(cat $work/fs/outside)\" = outside ]"
check "set-ID bits never reach the host (chmod 4755, 2755 through the share)" \
  bash -c "cp /bin/true $mnt/docs/prog && chmod 4755 $mnt/docs/prog; chmod 2755 $mnt/docs/prog; [ \"\$(stat -c %a $data/prog)\" = 755 ]"
ln -s "$data" "$work/fs/link"
check "what cannot be shared gets a clear error: a symlink, .., a missing path, a taken name" \
  bash -c "s SharePath 'usa{sv}' $handle $work/fs/link 0 2>&1 | grep -q 'not a real path' && s SharePath 'usa{sv}' $handle $data/../ro 1 name s x 2>&1 | grep -q 'not a real path' && s SharePath 'usa{sv}' $handle $work/none 0 2>&1 | grep -q 'no such file' && s SharePath 'usa{sv}' $handle $work/fs/outside 1 name s docs 2>&1 | grep -q 'already shares something as docs'"
check "UnsharePath takes a share away from the mounted client at once; the host keeps its files" \
  bash -c "s UnsharePath us $handle /ro && [ \"\$(ls $mnt | tr '\n' ' ')\" = 'docs ' ] && [ -f $ro_export/kept ]"

# Tversion (msize 65536, "9P2000.L") as bytes, for talking to a server without the kernel client.
tversion='\x15\x00\x00\x00\x64\xff\xff\x00\x00\x01\x00\x08\x009P2000.L'
export tversion
check "over AF_VSOCK (vsock_loopback): a server for CID 1 answers Tversion; one for CID 3 refuses CID 1" \
  bash -c "modprobe vsock_loopback && s StartServer 'a{sv}' 2 vsock_port u 16400 vsock_cid u 1 && s StartServer 'a{sv}' 2 vsock_port u 16401 vsock_cid u 3 && printf \"\$tversion\" | socat -t 5 - VSOCK-CONNECT:1:16400 | od -An -c | tr -d ' \n' | grep -q '9P2000.L' && [ -z \"\$(printf \"\$tversion\" | socat -t 5 - VSOCK-CONNECT:1:16401 2>/dev/null)\" ] && journalctl -u vmtools-seneschal --no-pager | grep -q 'refused a connection from CID 1'"
mkdir -p /home/shareuser/own && chown shareuser: /home/shareuser/own
check "a vmtools member's server runs as them; they share what they own, not root's files, nor as root; others' servers are not theirs" \
  bash -c "as_user busctl --system call $dest $path $dest StartServer 'a{sv}' 1 socket s /home/shareuser/9p.sock >$work/user && h=\$(grep -o '^u [0-9]*' $work/user | cut -d' ' -f2) && as_user busctl --system call $dest $path $dest SharePath 'usa{sv}' \$h /home/shareuser/own 0 && as_user busctl --system call $dest $path $dest SharePath 'usa{sv}' \$h $data 1 name s x 2>&1 | grep -q 'may share only what it owns' && as_user busctl --system call $dest $path $dest StartServer 'a{sv}' 2 socket s /home/shareuser/x.sock uid u 0 2>&1 | grep -q 'may not start a server as uid 0' && p=\$(pgrep -u shareuser -f seneschal-server) && [ -n \"\$p\" ] && as_user busctl --system call $dest $path $dest StopServer u $handle 2>&1 | grep -q 'may use only its own servers' && [ \"\$(as_user busctl --system call $dest $path $dest ListServers | grep -o '\"handle\" u [0-9]*')\" = \"\\\"handle\\\" u \$h\" ]"
check "a caller who is not root (nor in group vmtools) is refused by the bus policy" \
  bash -c "out=\$(setpriv --reuid=65534 --regid=65534 --clear-groups busctl --system call $dest $path $dest ListServers 2>&1); echo \"\$out\"; echo \"\$out\" | grep -qi 'denied'"
check "StopServer ends the server: its socket goes; the mounted client gets errors, not a hang" \
  bash -c "s StopServer u $handle && [ ! -e $work/9p.sock ] && ! kill -0 $pid 2>/dev/null && ! timeout 20 ls $mnt/docs >/dev/null 2>&1; umount -l $mnt; true"
check "stopping the unit stops every server" \
  bash -c "systemctl stop vmtools-seneschal && ! pgrep -f '^/usr/local/libexec/vmtools/seneschal-server '"

echo "       | $(systemd-analyze security --no-pager vmtools-seneschal.service 2>/dev/null | tail -n 1)"
if [ "$failed" -gt 0 ]; then
  echo "--- seneschal's journal"; journalctl -u vmtools-seneschal --no-pager | tail -n 30
fi
umount -l "$mnt" 2>/dev/null
umount "$work/fs" 2>/dev/null
rm -rf "$work"
finish
