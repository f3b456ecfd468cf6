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
  fi
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
