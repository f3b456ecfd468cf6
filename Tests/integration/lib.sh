# Shared helpers for integration tests (sourced). Each check prints one line; `finish` prints
# the machine-readable summary and sets the exit status.
passed=0
failed=0

# check NAME COMMAND...: runs COMMAND (an executable, killed after CHECK_TIMEOUT seconds,
# default 120), records pass or fail, and shows its output on failure.
check() {
  local name=$1; shift
  local output
  if output=$(timeout "${CHECK_TIMEOUT:-120}" "$@" 2>&1); then
    passed=$((passed + 1))
    echo "ok   - $name"
  else
    failed=$((failed + 1))
    echo "FAIL - $name"
    printf '%s\n' "$output" | tail -n 20 | sed 's/^/       | /'
    report_triple_faults
  fi
}

# A nested guest that triple-faulted is a known testbed flake (tools/test retries such a test
# once, and says so): name the VM logs that show one, so a failed check can be told apart.
report_triple_faults() {
  local file
  for file in $(grep -rlsI -D skip 'the guest triple-faulted (KVM_EXIT_SHUTDOWN)' ${work:+"$work"} /run/vmtools 2>/dev/null | sort -u); do
    echo "       | testbed: the guest triple-faulted (KVM_EXIT_SHUTDOWN), says $file"
  done
}

# wait_exit PID SECONDS: waits at most SECONDS for the background job PID to end and returns
# its exit status; one still running then is killed and returns 124, so that a VM that did not
# stop fails a check instead of hanging the test until the testbed's timeout hides its output.
wait_exit() {
  local pid=$1 i
  for ((i = 0; i < $2 * 2; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 124
  fi
  wait "$pid"
}

finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}

# The guest kernel the testbed installs for the default image.
GUEST_KERNEL=/var/lib/vmtools/images/default/vmlinuz

# make_initramfs OUT INIT [MODULE...]: packs a busybox initramfs whose /init is the script INIT,
# with the named kernel modules (and what they depend on) under /lib/modules, loadable with
# `modprobe` inside the guest. INITRAMFS_BINARIES (space-separated paths) adds testbed programs
# with the shared libraries they load (e.g. socat for vsock tests).
make_initramfs() {
  local out=$1 init=$2; shift 2
  local root kver
  root=$(mktemp -d)
  kver=$(uname -r)
  mkdir -p "$root"/{bin,sbin,proc,sys,dev,tmp,mnt,lib/modules/"$kver"}
  cp /bin/busybox "$root/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
  done
  if [ $# -gt 0 ]; then
    local m path
    for m in $(for name in "$@"; do modprobe --show-depends "$name"; done | awk '/^insmod/ {print $2}' | sort -u); do
      path=${m#/lib/modules/$kver/}
      mkdir -p "$root/lib/modules/$kver/$(dirname "$path")"
      cp "$m" "$root/lib/modules/$kver/$path"
    done
    cp /lib/modules/"$kver"/modules.{order,builtin,builtin.modinfo} "$root/lib/modules/$kver/" 2>/dev/null
    depmod -b "$root" "$kver"
  fi
  local bin lib
  for bin in ${INITRAMFS_BINARIES:-}; do
    mkdir -p "$root/usr/bin"
    cp "$bin" "$root/usr/bin/"
    for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
      mkdir -p "$root$(dirname "$lib")"
      cp -L "$lib" "$root$lib"
    done
  done
  install -m 0755 "$init" "$root/init"
  (cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$out"
  rm -rf "$root"
}

# MARK: - 9P file-system checks (p9-linux.sh, seneschal.sh)

# workout DIR: the same operations in a folder; prints what the tree ends up as (no inode
# numbers or times), to compare a 9P mount with a local folder.
workout() {
  set -e
  cd "$1"
  echo hello >f && cat f >/dev/null
  mkdir -p a/b/c/d
  mv f a/b/g
  echo bye >>a/b/g
  ln -s a/b/g link
  ln -s /outside/absolute abs
  echo x >h1 && ln h1 h2
  chmod 640 h1 && chmod 700 a/b/c
  printf '%s' 0123456789 >t && truncate -s 100000 t && truncate -s 5 t
  mkdir gone && rmdir gone
  touch del && rm del
  echo data >src && mv src a/b/c/dst
  mkfifo pipe
  cd - >/dev/null
  (cd "$1" && find . -mindepth 1 -printf '%P %y %s %m %n %l\n' | LC_ALL=C sort)
}
export -f workout

# ro_refuses MOUNT EXPORT: every change through MOUNT (a read-only 9P mount whose EXPORT holds
# exactly one file, `kept`, reading "keep") fails as read-only and changes nothing.
ro_refuses() {
  local ro=$1 export=$2 op out
  for op in "touch $ro/new" "truncate -s 0 $ro/kept" "chmod 600 $ro/kept" "mv $ro/kept $ro/moved" \
    "rm $ro/kept" "mkdir $ro/d" "ln -s x $ro/l" "setfattr -n user.a -v b $ro/kept" \
    "dd if=/dev/zero of=$ro/kept bs=1 count=1 conv=notrunc status=none"; do
    if out=$($op 2>&1); then echo "allowed: $op"; return 1; fi
    echo "$out" | grep -qi 'read-only' || { echo "$op: $out"; return 1; }
  done
  [ "$(cat "$export/kept")" = keep ] && [ "$(ls "$export" | wc -l)" = 1 ]
}
export -f ro_refuses
