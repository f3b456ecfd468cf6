#!/bin/bash
# vmm boots the stock Debian kernel with a busybox initramfs: to the guest's init with 1 and 4
# vCPUs, as a bzImage and as the ELF vmlinux inside it (PVH), console input and output, the
# port-0x80 boot marker, reboot and poweroff ending vmm with status 0, vCPU and device threads
# placed on the CPUs asked for, and clear errors for bad kernels and arguments.
source "$(dirname "$0")/lib.sh"
work=$(mktemp -d)

cat >"$work/init" <<'INIT'
#!/bin/sh
mount -t proc proc /proc
mount -t devtmpfs dev /dev
echo "GUEST-INIT cpus=$(nproc) kernel=$(uname -r)"
printf 'A' | dd of=/dev/port bs=1 seek=128 count=1 2>/dev/null
if grep -q console_input /proc/cmdline; then
  # The host repeats its line: bytes that arrive before the UART driver resets its FIFO are lost.
  for i in 1 2 3 4 5 6 7 8 9 10; do
    read -r line </dev/console
    [ "$line" = hello-from-host ] && break
  done
  echo "GUEST-READ [$line]"
fi
# "hold": stay up a while, so that the host can look at vmm's threads.
grep -q hold /proc/cmdline && sleep 4
grep -q do_poweroff /proc/cmdline && poweroff -f
reboot -f
INIT
make_initramfs "$work/initrd.gz" "$work/init"

boot() { # boot LOG ARGS...: runs vmm with the test initramfs, output to LOG
  local log=$1; shift
  timeout 120 vmm run --kernel "$GUEST_KERNEL" --initrd "$work/initrd.gz" --no-console-input "$@" </dev/null >"$log" 2>&1
}

check "1 vCPU: guest init runs, reboot ends vmm with 0" bash -c "$(declare -f boot); work=$work GUEST_KERNEL=$GUEST_KERNEL; boot $work/one.log --params quiet && grep -q 'GUEST-INIT cpus=1' $work/one.log"
check "the boot marker on port 0x80 is logged with a time" grep -Eq 'boot marker 0x41 at [0-9]+\.[0-9] ms' "$work/one.log"
check "poweroff (ACPI S5) ends vmm with 0" bash -c "$(declare -f boot); work=$work GUEST_KERNEL=$GUEST_KERNEL; boot $work/off.log --params 'quiet do_poweroff' && grep -q 'guest powered off' $work/off.log"
check "4 vCPUs: the guest sees 4 CPUs" bash -c "$(declare -f boot); work=$work GUEST_KERNEL=$GUEST_KERNEL; boot $work/four.log --cpus 4 --mem 512 --params quiet && grep -q 'GUEST-INIT cpus=4' $work/four.log"
# Placement: the vCPU threads on the testbed's CPU 1, the device thread and the rest on CPU 0,
# as each thread's allowed CPUs show while the guest runs.
placed() {
  vmm run --kernel "$GUEST_KERNEL" --initrd "$work/initrd.gz" --no-console-input --cpus 2 --params 'quiet hold' \
    --vcpu-affinity 1 --device-affinity 0 </dev/null >"$work/placed.log" 2>&1 &
  local pid=$! i t
  for i in $(seq 240); do grep -q GUEST-INIT "$work/placed.log" && break; sleep 0.5; done
  for t in /proc/$pid/task/*; do echo "$(cat "$t/comm")=$(sed -n 's/^Cpus_allowed_list:\s*//p' "$t/status")"; done | sort | tr '\n' ' '
  wait "$pid"
  echo "status=$?"
}
echo "placed threads: $(placed | tee "$work/placed")"
check "--vcpu-affinity 1: both vCPU threads may run on CPU 1 only" grep -q 'vcpu0=1 vcpu1=1 ' "$work/placed"
check "--device-affinity 0: the device thread and vmm's other threads on CPU 0 only" bash -c "grep -q 'devices=0 ' $work/placed && ! tr ' ' '\\n' <$work/placed | grep -v -e '^vcpu[01]=1\$' -e '^status=' -e '=0\$' | grep -q ."
check "the placed VM's guest ran with 2 CPUs and vmm ended with 0" bash -c "grep -q 'GUEST-INIT cpus=2' $work/placed.log && grep -q 'status=0' $work/placed"
# PVH: the ELF vmlinux inside the Debian bzImage (an xz stream after the setup code) boots
# directly in 32-bit protected mode from its XEN_ELFNOTE_PHYS32_ENTRY.
xz_at=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$GUEST_KERNEL" | head -n 1 | cut -d: -f1)
tail -c +$((xz_at + 1)) "$GUEST_KERNEL" 2>/dev/null | xz -dc >"$work/vmlinux" 2>/dev/null
check "PVH: the ELF vmlinux boots to init with 2 vCPUs, reboot ends vmm with 0" bash -c "$(declare -f boot); work=$work GUEST_KERNEL=$work/vmlinux; boot $work/pvh.log --cpus 2 --params quiet && grep -q 'GUEST-INIT cpus=2' $work/pvh.log"
check "PVH: the kernel found the initrd, command line and ACPI tables from the start info" bash -c "grep -q 'GUEST-INIT' $work/pvh.log && timeout 120 vmm run --kernel $work/vmlinux --initrd $work/initrd.gz --no-console-input </dev/null 2>&1 | tee $work/pvh-verbose.log | grep -q 'ACPI: RSDP 0x00000000000E0000' && grep -q 'Command line: console=ttyS0' $work/pvh-verbose.log && grep -q 'RAMDISK: \[mem' $work/pvh-verbose.log"
check "console input reaches the guest" bash -c "for i in \$(seq 60); do echo hello-from-host 2>/dev/null || break; sleep 1; done | timeout 120 vmm run --kernel $GUEST_KERNEL --initrd $work/initrd.gz --params 'quiet console_input' >$work/input.log 2>&1; grep -q 'GUEST-READ \[hello-from-host\]' $work/input.log"
# An interactive terminal (a pty from script(1)): raw while the VM runs, restored after it.
cat >"$work/interactive.sh" <<INNER
stty -g >$work/tty-before
vmm run --kernel $GUEST_KERNEL --initrd $work/initrd.gz --params 'quiet console_input' <&0 &
sleep 2
stty -a >$work/tty-during
wait \$!
echo "vmm-rc=\$?"
stty -g >$work/tty-after
INNER
for i in $(seq 60); do echo hello-from-host 2>/dev/null || break; sleep 1; done |
  timeout 150 script -qefc "bash $work/interactive.sh" /dev/null 2>&1 | tr -d '\r' >"$work/tty.log"
check "on a terminal: typed input reaches the guest and vmm exits 0" bash -c "grep -q 'GUEST-READ \[hello-from-host\]' $work/tty.log && grep -q vmm-rc=0 $work/tty.log"
check "on a terminal: raw mode (no echo, no line editing) while the VM runs" bash -c "cat $work/tty-during; grep -q -- '-icanon' $work/tty-during && grep -q -- '-echo ' $work/tty-during"
check "on a terminal: the settings are restored when vmm exits" cmp "$work/tty-before" "$work/tty-after"
check "--serial file=PATH writes the console to the file" bash -c "timeout 120 vmm run --kernel $GUEST_KERNEL --initrd $work/initrd.gz --no-console-input --params quiet --serial file=$work/serial.log </dev/null >$work/stdout.log 2>&1 && grep -q GUEST-INIT $work/serial.log && ! grep -q GUEST-INIT $work/stdout.log"

# Bad input: each fails with status 1 or 64 (usage) and a message that names the problem.
fails_with() { # fails_with PATTERN ARGS...
  local pattern=$1; shift
  local out
  out=$(timeout 60 vmm run "$@" </dev/null 2>&1) && { echo "unexpected success: $out"; return 1; }
  echo "$out" | grep -q -- "$pattern" || { echo "message lacks '$pattern': $out"; return 1; }
}
head -c 8192 /dev/urandom >"$work/garbage"
check "a missing kernel file is named in the error" bash -c "$(declare -f fails_with); fails_with 'cannot read the kernel /nonexistent' --kernel /nonexistent"
check "an ELF file without a PVH entry is refused as a kernel" bash -c "$(declare -f fails_with); fails_with 'no PVH entry point' --kernel /bin/busybox"
check "random bytes are refused as a kernel" bash -c "$(declare -f fails_with); fails_with 'not a Linux kernel' --kernel $work/garbage"
check "a directory is refused as an initrd" bash -c "$(declare -f fails_with); fails_with 'not a regular file' --kernel $GUEST_KERNEL --initrd /tmp"
check "--cpus 0 is refused" bash -c "$(declare -f fails_with); fails_with 'cpus 0' --kernel $GUEST_KERNEL --cpus 0"
check "--mem 1 is refused" bash -c "$(declare -f fails_with); fails_with 'too small' --kernel $GUEST_KERNEL --mem 1"
check "a CPU the VMM may not use is refused by name" bash -c "$(declare -f fails_with); fails_with 'vcpu-affinity 63: none of these CPUs is available to vmm (it may use 0-1)' --kernel $GUEST_KERNEL --vcpu-affinity 63"
check "a malformed CPU list is refused" bash -c "$(declare -f fails_with); fails_with '\"0-x\" is not a CPU or a range' --kernel $GUEST_KERNEL --device-affinity 0-x"
check "a bad --serial is refused" bash -c "$(declare -f fails_with); fails_with 'serial must be' --kernel $GUEST_KERNEL --serial bogus"
rm -rf "$work"
finish
