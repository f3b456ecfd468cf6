#!/bin/bash
# vmm's PCI devices and control socket with the stock Debian kernel: virtio-blk read-only and
# read-write (bytes the guest writes are on the host after exit, a read-only disk refuses
# writes), virtio-rng feeding /dev/hwrng, virtio-console (hvc0) output and input, MSI-X
# interrupts (irqfd) and queue doorbells (ioeventfd), a guest kernel panic reported through
# pvpanic, stop/pause/resume/status through the control socket and SIGTERM, and vmm's sandbox.
source "$(dirname "$0")/lib.sh"
work=$(mktemp -d)

cat >"$work/init" <<'INIT'
#!/bin/sh
mount -t proc proc /proc
mount -t devtmpfs dev /dev
mount -t sysfs sys /sys
for m in virtio_pci virtio_blk virtio_rng; do modprobe $m || echo "GUEST-ERROR modprobe $m"; done
for i in 1 2 3 4 5 6 7 8 9 10; do [ -b /dev/vdb ] && break; sleep 0.5; done
echo "GUEST-VDA [$(head -c 22 /dev/vda)]"
echo "GUEST-RNG $(head -c 32 /dev/hwrng | od -An -tx1 | tr -d ' \n')"
echo "GUEST-RNG-SOURCE $(cat /sys/class/misc/hw_random/rng_current)"
echo "GUEST-MSIX $(grep -c PCI-MSI /proc/interrupts)"
if dd if=/dev/zero of=/dev/vda bs=512 count=1 conv=fsync 2>/dev/null; then echo "GUEST-RO-WRITE succeeded"; else echo "GUEST-RO-WRITE refused"; fi
printf 'written-by-the-guest' | dd of=/dev/vdb bs=512 seek=8 conv=sync,fsync 2>/dev/null && echo GUEST-RW-WRITE done
# Two MiB through the device thread: the host checks the same bytes landed.
dd if=/dev/urandom of=/tmp/blob bs=1M count=2 2>/dev/null
echo "GUEST-BLOB-MD5 $(md5sum </tmp/blob | cut -d' ' -f1)"
dd if=/tmp/blob of=/dev/vdb bs=1M seek=1 conv=fsync 2>/dev/null || echo "GUEST-ERROR blob write"
echo 3 >/proc/sys/vm/drop_caches
echo "GUEST-BLOB-READBACK $(dd if=/dev/vdb bs=1M skip=1 count=2 2>/dev/null | md5sum | cut -d' ' -f1)"
if grep -q panic_test /proc/cmdline; then
  modprobe pvpanic-pci || echo "GUEST-ERROR modprobe pvpanic-pci"
  echo c >/proc/sysrq-trigger
fi
if grep -q hvc_test /proc/cmdline; then
  modprobe virtio_console || echo "GUEST-ERROR modprobe virtio_console"
  for i in 1 2 3 4 5 6 7 8 9 10; do [ -c /dev/hvc0 ] && break; sleep 0.5; done
  echo "GUEST-HVC hello-on-hvc0" >/dev/hvc0
  for i in 1 2 3 4 5 6 7 8 9 10; do
    read -r line </dev/hvc0
    [ "$line" = from-host-hvc ] && break
  done
  echo "GUEST-HVC-READ [$line]" >/dev/hvc0
fi
if grep -q wait_forever /proc/cmdline; then
  while true; do echo "tick"; sleep 1; done
fi
reboot -f
INIT
make_initramfs "$work/initrd.gz" "$work/init" virtio_pci virtio_blk virtio_rng virtio_console pvpanic-pci

printf 'known-contents-of-vda!' >"$work/ro.img"
truncate -s 4M "$work/ro.img"
truncate -s 4M "$work/rw.img"
timeout 180 vmm run --kernel "$GUEST_KERNEL" --initrd "$work/initrd.gz" --no-console-input --params quiet \
  --disk "$work/ro.img" --rwdisk "$work/rw.img" --cpus 2 </dev/null >"$work/boot.log" 2>&1
echo "vmm exit status $?" >>"$work/boot.log"
sed -i 's/\r$//' "$work/boot.log"  # the guest's tty ends lines with CR LF

check "vmm exits 0 after the guest reboots" grep -q "vmm exit status 0" "$work/boot.log"
check "the guest reads the read-only disk's known contents" grep -q "GUEST-VDA \[known-contents-of-vda!\]" "$work/boot.log"
check "virtio-rng is the guest's hwrng and gives 32 random bytes" bash -c "grep -q 'GUEST-RNG-SOURCE virtio_rng' $work/boot.log && grep -Eq 'GUEST-RNG [0-9a-f]{64}$' $work/boot.log && ! grep -q 'GUEST-RNG 0000000000000000' $work/boot.log"
check "virtio devices interrupt through MSI-X" grep -Eq "GUEST-MSIX [1-9]" "$work/boot.log"
check "a write to the read-only disk is refused" grep -q "GUEST-RO-WRITE refused" "$work/boot.log"
check "the read-only image is unchanged" bash -c "head -c 22 $work/ro.img | grep -q known-contents-of-vda"
check "bytes the guest wrote to the rw disk are on the host" bash -c "dd if=$work/rw.img bs=512 skip=8 count=1 2>/dev/null | head -c 20 | grep -q written-by-the-guest"
check "2 MiB written by the guest are on the host, byte for byte" bash -c "want=\$(sed -n 's/^GUEST-BLOB-MD5 //p' $work/boot.log); got=\$(dd if=$work/rw.img bs=1M skip=1 count=2 2>/dev/null | md5sum | cut -d' ' -f1); echo \$want \$got; [ -n \"\$want\" ] && [ \"\$want\" = \"\$got\" ]"
check "the guest reads the 2 MiB back from the disk unchanged" bash -c "want=\$(sed -n 's/^GUEST-BLOB-MD5 //p' $work/boot.log); grep -q \"GUEST-BLOB-READBACK \$want\" $work/boot.log"
check "no module failed to load" bash -c "! grep GUEST-ERROR $work/boot.log"

# A guest kernel panic is reported through pvpanic: its own exit status and a log line.
timeout 180 vmm run --kernel "$GUEST_KERNEL" --initrd "$work/initrd.gz" --no-console-input \
  --params "quiet panic_test" </dev/null >"$work/panic.log" 2>&1
echo "vmm exit status $?" >>"$work/panic.log"
check "a guest kernel panic ends vmm with status 34" grep -q "vmm exit status 34" "$work/panic.log"
check "the panic is named in vmm's log" grep -q "the guest kernel panicked" "$work/panic.log"

# virtio-console: output to a file, host stdin to the guest's hvc0 (repeated: input that comes
# before the driver posts its buffers waits, bounded).
for i in $(seq 60); do echo from-host-hvc 2>/dev/null || break; sleep 1; done | timeout 120 vmm run --kernel "$GUEST_KERNEL" \
  --initrd "$work/initrd.gz" --params "quiet hvc_test" --console "file=$work/hvc.log" >"$work/hvc-serial.log" 2>&1
check "virtio-console: the guest's hvc0 output reaches the console file" grep -q "GUEST-HVC hello-on-hvc0" "$work/hvc.log"
check "virtio-console: host input reaches the guest's hvc0" grep -q "GUEST-HVC-READ \[from-host-hvc\]" "$work/hvc.log"
check "a bad --console is refused" bash -c "! vmm run --kernel $GUEST_KERNEL --console bogus 2>&1 | grep -q 'console must be'; vmm run --kernel $GUEST_KERNEL --console bogus 2>&1 | grep -q 'console must be'"

# Control socket.
vmm run --kernel "$GUEST_KERNEL" --initrd "$work/initrd.gz" --no-console-input --params "quiet wait_forever" \
  --socket "$work/ctl" --serial "file=$work/serial.log" </dev/null >"$work/ctl.log" 2>&1 &
vmm_pid=$!
for i in $(seq 90); do grep -q tick "$work/serial.log" 2>/dev/null && break; sleep 1; done
ticks() { grep -c tick "$work/serial.log"; }
check "status reports a running VM as JSON" bash -c "vmm status $work/ctl | grep -q '\"state\":\"running\",\"pid\":$vmm_pid,\"vcpus\":1,\"memory_mib\":256'"
check "the running vmm is sandboxed: seccomp filter, no_new_privs, no capabilities" bash -c "grep -q '^Seccomp:[[:space:]]*2' /proc/$vmm_pid/status && grep -q '^NoNewPrivs:[[:space:]]*1' /proc/$vmm_pid/status && grep -q '^CapEff:[[:space:]]*0000000000000000' /proc/$vmm_pid/status"
check "every vmm thread has no capabilities" bash -c "for t in /proc/$vmm_pid/task/*; do grep -q '^CapEff:[[:space:]]*0000000000000000' \$t/status || exit 1; done"
check "the queue doorbells are served by ioeventfds" bash -c "vmm status $work/ctl | grep -Eq '\"ioeventfds\":[1-9]'"
check "status shows each vCPU's activity: in KVM_RUN or not, its exits, the last one" \
  bash -c "vmm status $work/ctl | grep -Eq '\"vcpu_activity\":\[\{\"id\":0,\"in_kvm_run\":(true|false),\"exits\":[1-9][0-9]*,\"last_exit\":\"[a-z-]+ 0x[0-9a-f]+\"\}\]'"
check "registers reports each vCPU's registers in long mode (EFER.LMA) and leaves the VM running" \
  bash -c "vmm registers $work/ctl | tee /dev/stderr | grep -Eq '\"state\":\"running\",\"vcpus\":\[\{\"id\":0,\"registers\":\"rip=0x[0-9a-f]+ rsp=0x[0-9a-f]+ .*efer=0x[0-9a-f]*[4-7c-f][0-9a-f]{2} ' && a=\$(grep -c tick $work/serial.log) && sleep 3 && [ \$(grep -c tick $work/serial.log) -gt \$a ]"
check "pause stops the guest's clock of ticks" bash -c "vmm pause $work/ctl | grep -q paused && a=\$(grep -c tick $work/serial.log) && sleep 3 && b=\$(grep -c tick $work/serial.log) && echo \$a \$b && [ \$a -eq \$b ]"
check "status says paused" bash -c "vmm status $work/ctl | grep -q '\"state\":\"paused\"'"
check "resume lets it run again" bash -c "vmm resume $work/ctl | grep -q running && a=\$(grep -c tick $work/serial.log) && sleep 3 && b=\$(grep -c tick $work/serial.log) && echo \$a \$b && [ \$b -gt \$a ]"
check "an unknown command gets an error reply" bash -c "echo reboot-the-planet | socat - UNIX-CONNECT:$work/ctl | grep -q '\"ok\":false'"
check "stop ends vmm with status 0 and removes the socket" bash -c "vmm stop $work/ctl && wait_pid() { for i in \$(seq 30); do kill -0 $vmm_pid 2>/dev/null || return 0; sleep 1; done; return 1; }; wait_pid && [ ! -e $work/ctl ]"
wait_exit "$vmm_pid" 5
check "vmm's exit status after stop is 0" test "$?" -eq 0
check "a stopped VM's socket refuses clients with a clear error" bash -c "! vmm status $work/ctl 2>&1 | grep -q 'cannot connect'; vmm status $work/ctl 2>&1 | grep -q 'cannot connect'"

vmm run --kernel "$GUEST_KERNEL" --initrd "$work/initrd.gz" --no-console-input --params "quiet wait_forever" \
  --serial none </dev/null >"$work/term.log" 2>&1 &
vmm_pid=$!
sleep 8
kill -TERM "$vmm_pid"
wait_exit "$vmm_pid" 60
check "SIGTERM stops the VM cleanly (status 0)" test "$?" -eq 0
check "a disk that does not exist is named in the error" bash -c "! vmm run --kernel $GUEST_KERNEL --disk /nonexistent.img 2>&1 </dev/null | grep -q 'cannot open the disk image /nonexistent.img'; vmm run --kernel $GUEST_KERNEL --disk /nonexistent.img 2>&1 </dev/null | grep -q 'cannot open the disk image /nonexistent.img'"
rm -rf "$work"
finish
