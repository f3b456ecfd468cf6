#!/bin/bash
# Inside the testbed (see tools/bench-9p): seneschal's server over vsock in a vmm guest vs QEMU's
# virtio-9p.
set -uo pipefail
runs=${1:-3}
mib=${2:-1024}
work=$(mktemp -d)
image=/var/lib/vmtools/images/default
seneschal() { busctl --system call org.vmtools.Seneschal /org/vmtools/Seneschal org.vmtools.Seneschal "$@"; }
# vhost_vsock only for QEMU's guest (see bench.d/vsock.sh: loaded, it broke vmm guests here).
vhost() { if [ "$1" = qemu ]; then modprobe vhost_vsock; else modprobe -r vhost_vsock 2>/dev/null; fi; true; }
share=$work/share
mkdir -p "$share/many" && (cd "$share/many" && seq 10000 | xargs touch)

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) exit; if (NR % 2) print v[(NR + 1) / 2]; else print int((v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

# The workload in the guest, timed there: write, read (MiB/s), find + stat (ms) in DIR.
cat >"$share/workload.sh" <<'SH'
#!/bin/sh
dir=$1 mib=$2
now() { awk '{ print int($1 * 1000) }' /proc/uptime; }  # ms; busybox date has no %N
t0=$(now); dd if=/dev/zero of=$dir/big bs=1048576 count=$mib conv=fsync 2>/dev/null; t1=$(now)
echo 3 >/proc/sys/vm/drop_caches
t2=$(now); dd if=$dir/big of=/dev/null bs=1048576 2>/dev/null; t3=$(now)
t4=$(now); find $dir/many -type f | xargs stat -c %s >/dev/null; t5=$(now)
rm -f $dir/big
echo "$((mib * 1000 / (t1 - t0 + 1))) $((mib * 1000 / (t3 - t2 + 1))) $((t5 - t4))"
SH
chmod +x "$share/workload.sh"

# run_in KIND: boots a guest of KIND with the share mounted at /mnt/shared, runs the workload
# $runs times, prints one line per run.
run_in() {
  local kind=$1 sock=$work/$1.sock vm server="" ready handle="" dir=/mnt/shared
  vhost "$kind"
  rm -f "$sock"*
  case $kind in
    vmm)
      # As concierge does for a VM: a server at seneschal where vmm sends vsock port 16384.
      handle=$(seneschal StartServer 'a{sv}' 1 socket s "${sock}_16384" | cut -d' ' -f2)
      seneschal SharePath 'usa{sv}' "$handle" "$share" 2 writable b true name s bench >/dev/null
      dir=/mnt/shared/bench
      vmtoolsctl guest ready --vsock "$sock" --timeout 300 >/dev/null & ready=$!
      sleep 0.5
      vmm run --kernel $image/vmlinuz --initrd $image/initrd.img --mem 512 --cpus 2 --no-console-input \
        --params quiet --cid 3 --vsock "$sock" --serial "file=$work/vmm-serial.log" </dev/null >"$work/vmm.log" 2>&1 &
      vm=$!
      wait "$ready" || { echo "bench: vmm guest did not come up" >&2; return 1; }
      endpoint=(--vsock "$sock")
      vmtoolsctl guest mount-9p "${endpoint[@]}" 16384 /mnt/shared ;;
    qemu)
      vmtoolsctl guest ready --listen vsock:7777 --timeout 300 >/dev/null & ready=$!
      sleep 0.5
      qemu-system-x86_64 -M q35 -enable-kvm -cpu host -m 512 -smp 2 -nodefaults -no-user-config -display none \
        -serial "file:$work/qemu-serial.log" -kernel $image/vmlinuz -initrd $image/initrd.img -append "console=ttyS0 quiet" \
        -device vhost-vsock-pci,guest-cid=4 -virtfs local,path="$share",mount_tag=share,security_model=passthrough,id=fs0 \
        </dev/null >"$work/qemu.log" 2>&1 &
      vm=$!
      wait "$ready" || { echo "bench: QEMU guest did not come up" >&2; return 1; }
      # vmtoolsctl reaches maitred through a Unix socket: bridge it to the guest's AF_VSOCK port.
      socat UNIX-LISTEN:"$sock",fork VSOCK-CONNECT:4:8888 & server=$!
      sleep 0.5
      endpoint=(--socket "$sock")
      vmtoolsctl guest mount "${endpoint[@]}" share /mnt/shared --type 9p --create-target \
        --options trans=virtio,version=9p2000.L,cache=none,access=any,msize=262144 ;;
  esac
  for r in $(seq "$runs"); do
    timeout 400 vmtoolsctl exec "${endpoint[@]}" -- "$dir/workload.sh" "$dir" "$mib"
  done
  if ! kill -0 "$vm" 2>/dev/null; then
    echo "bench: the $kind guest ended early; its VMM's log and console:" >&2
    tail -n 5 "$work/$kind.log" "$work/$kind-serial.log" >&2
  fi
  kill "$vm" $server 2>/dev/null
  wait "$vm" 2>/dev/null
  [ -z "$handle" ] || seneschal StopServer u "$handle"
}

echo "bench: 9P, $mib MiB sequential write (fsync) and read, find + stat of 10 000 files; $runs runs each; 2 vCPUs, 512 MiB guests"
kinds=${3:-vmm qemu}
for kind in $kinds; do
  run_in "$kind" | while read -r w r f; do
    echo "$w $r $f" >>"$work/$kind.runs"
    echo "  $kind: write $w MiB/s, read $r MiB/s, find+stat $f ms"
  done
done
printf '\n%-40s %14s %14s %16s\n' "" "write MiB/s" "read MiB/s" "find+stat 10k"
for kind in $kinds; do
  case $kind in vmm) label="seneschal over vsock (vmm, trans=fd)" ;; *) label="QEMU -virtfs (virtio-9p)" ;; esac
  f=$work/$kind.runs
  [ -s "$f" ] || { printf '%-40s %14s\n' "$label" "failed"; continue; }
  printf '%-40s %14s %14s %13s ms\n' "$label" "$(cut -d' ' -f1 "$f" | median)" "$(cut -d' ' -f2 "$f" | median)" "$(cut -d' ' -f3 "$f" | median)"
done
rm -rf "$work"
