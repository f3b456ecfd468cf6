#!/bin/bash
# Diagnostic, not run by CI: boots ROUNDS VMs (default 6) in which the guest streams 8 MiB to the
# host through vmm's vsock four times, and counts the rounds whose guest died (a triple fault or
# a hang) against those that completed. THP (never|madvise|always) sets the testbed's transparent
# huge pages first (vmm asks for huge pages on guest RAM with MADV_HUGEPAGE).
#   tools/testbed run Tests/testbed/vsock-stress.sh [ROUNDS [THP]]
# In the testbed it runs from the integration tests' folder; from the tree, beside it.
lib=$(dirname "$0")/lib.sh; [ -f "$lib" ] || lib=$(dirname "$0")/../integration/lib.sh
source "$lib"
rounds=${1:-6}
thp=${2:-}
[ -z "$thp" ] || echo "$thp" >/sys/kernel/mm/transparent_hugepage/enabled
echo "testbed THP: $(cat /sys/kernel/mm/transparent_hugepage/enabled)"
work=$(mktemp -d)

cat >"$work/init" <<'INIT'
#!/bin/sh
export PATH=/usr/bin:/bin:/sbin
mount -t proc proc /proc
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
modprobe virtio_pci; modprobe vmw_vsock_virtio_transport
dd if=/dev/urandom of=/tmp/blob bs=1M count=8 2>/dev/null
echo "GUEST-BLOB-MD5 $(md5sum </tmp/blob | cut -d' ' -f1)"
for p in 5001 5002 5003 5004; do
  socat -u FILE:/tmp/blob VSOCK-CONNECT:2:$p && echo "GUEST-SENT $p"
done
sleep 2
echo GUEST-DONE
poweroff -f
INIT
INITRAMFS_BINARIES=$(command -v socat) make_initramfs "$work/initrd.gz" "$work/init" virtio_pci vmw_vsock_virtio_transport

ok=0 died=0 bad=0
for r in $(seq "$rounds"); do
  sock=$work/v$r.sock
  for p in 5001 5002 5003 5004; do socat -u UNIX-LISTEN:"${sock}_$p" CREATE:"$work/r$r-$p.blob" & done
  sleep 0.3
  start=$SECONDS
  timeout 180 vmm run --kernel "$GUEST_KERNEL" --initrd "$work/initrd.gz" --no-console-input --params quiet \
    --mem 512 --cid 3 --vsock "$sock" --serial "file=$work/serial-$r.log" </dev/null >"$work/vmm-$r.log" 2>&1
  status=$?
  kill $(jobs -p) 2>/dev/null; wait 2>/dev/null
  want=$(tr -d '\r' <"$work/serial-$r.log" | sed -n 's/^GUEST-BLOB-MD5 //p')
  good=0
  for p in 5001 5002 5003 5004; do
    [ -n "$want" ] && [ "$(md5sum <"$work/r$r-$p.blob" 2>/dev/null | cut -d' ' -f1)" = "$want" ] && good=$((good + 1))
  done
  if grep -q triple-fault "$work/vmm-$r.log" || [ "$status" -ne 0 ]; then
    died=$((died + 1))
    echo "round $r: guest died after $((SECONDS - start)) s (vmm status $status, $good/4 streams intact)"
    grep -v '^\[' "$work/vmm-$r.log" | tail -n 4 | sed 's/^/   | /'
  elif [ "$good" -eq 4 ]; then
    ok=$((ok + 1))
    echo "round $r: 4/4 streams intact in $((SECONDS - start)) s"
  else
    bad=$((bad + 1))
    echo "round $r: only $good/4 streams intact"
  fi
done
rm -rf "$work"
echo "vsock-stress (THP $(sed 's/.*\[\(.*\)\].*/\1/' /sys/kernel/mm/transparent_hugepage/enabled)): $ok completed, $died died, $bad corrupted"
passed=$ok failed=$((died + bad))
finish
