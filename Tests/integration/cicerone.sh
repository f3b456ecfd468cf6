#!/bin/bash
# cicerone and garcon end to end on the testbed, as a user drives them: concierge starts a VM
# and tells cicerone (D-Bus activation of vmtools-cicerone.service), which listens for the VM's
# containers at <vsock socket>_8889. `vmtoolsctl container create/start` makes a container in the
# guest (maitred: new namespaces, the guest's own / beneath an overlay of the container's
# changes, garcon as its first process); garcon reports ready with its token; applications
# installed in the container are listed, launched and their icons fetched; a new .desktop file
# is announced; OpenUrl reaches the host; a garcon with a wrong token, or with a right token
# from another VM, is refused; StopContainer and the VM's stop clean everything up.
source "$(dirname "$0")/lib.sh"
dest=org.vmtools.Cicerone
path=/org/vmtools/Cicerone
c() { busctl --system --timeout=180 call org.vmtools.Concierge /org/vmtools/Concierge org.vmtools.Concierge "$@"; }
ci() { busctl --system --timeout=120 call "$dest" "$path" "$dest" "$@"; }
export -f c ci
export dest path
work=$(mktemp -d)
export work
systemd-sysusers /etc/sysusers.d/vmtools.conf && systemctl reload dbus

busctl --system monitor --match "type='signal',interface='$dest'" >"$work/signals" 2>&1 &
monitor=$!
sleep 1
# signal NAME ARG-PATTERN: whether the monitor saw signal NAME whose text matches the pattern.
signal() { grep -A6 "Member=$1" "$work/signals" | grep -q -- "$2"; }
export -f signal
listed_stopped() { vmtoolsctl container list demo | grep -q '^penguin  *stopped '; }
export -f listed_stopped
# wait_for SECONDS COMMAND...: polls COMMAND every half second.
wait_for() { local n=$(($1 * 2)); shift; until "$@"; do n=$((n - 1)); [ $n -gt 0 ] || return 1; sleep 0.5; done; }
export -f wait_for

check "StartVm boots demo; concierge tells cicerone, which D-Bus activation starts, and it listens at the VM's vsock.sock_8889" \
  bash -c "c StartVm 'sa{sv}' demo 2 memory_mib u 512 cpus u 2 >$work/info && wait_for 60 test -S /run/vmtools/demo/vsock.sock_8889 && systemctl is-active vmtools-cicerone"
maitred=$(grep -o '"maitred_socket" s "[^"]*"' "$work/info" | cut -d'"' -f4)
x() { timeout 60 vmtoolsctl exec --socket "$maitred" "$@"; }
export -f x; export maitred
check "the unit runs with no capabilities, no network, a strict file system" \
  bash -c "systemctl show -p CapabilityBoundingSet vmtools-cicerone | grep -qx 'CapabilityBoundingSet=' && systemctl show -p PrivateNetwork vmtools-cicerone | grep -qx PrivateNetwork=yes && systemctl show -p ProtectSystem vmtools-cicerone | grep -qx ProtectSystem=strict"

check "vmtoolsctl container create: penguin is listed, stopped, made from the guest's / with its changes in /var/lib/vmtools/containers/penguin" \
  bash -c "vmtoolsctl container create demo penguin && vmtoolsctl container list demo | tee /dev/stderr | grep -q '^penguin  *stopped  */  */var/lib/vmtools/containers/penguin '"
started=$(date +%s%N)
check "vmtoolsctl container start returns once garcon is ready; ContainerStarted was signalled" \
  bash -c "vmtoolsctl container start demo penguin && signal ContainerStarted penguin && vmtoolsctl container list demo | grep -q '^penguin  *running '"
echo "       | container start took $(( ($(date +%s%N) - started) / 1000000 )) ms"
check "the token is 64 hex digits, only in the container's /dev/.container_token (0600)" \
  bash -c "t=\$(ci GetContainerToken ss demo penguin | cut -d'\"' -f2); echo \"\$t\" | grep -qx '[0-9a-f]\{64\}' && vmtoolsctl app launch demo penguin -- /bin/sh -c 'stat -c %a /dev/.container_token >/tmp/mode; cat /dev/.container_token >/tmp/t' && wait_for 10 x -- test -s /var/lib/vmtools/containers/penguin/upper/tmp/t && [ \"\$(x -- cat /var/lib/vmtools/containers/penguin/upper/tmp/t)\" = \"\$t\" ] && [ \"\$(x -- cat /var/lib/vmtools/containers/penguin/upper/tmp/mode)\" = 600 ]"
upper=/var/lib/vmtools/containers/penguin/upper
export upper
check "in the container: its own PID namespace (garcon is PID 1), its hostname, and its writes land in its changes only" \
  bash -c "vmtoolsctl app launch demo penguin -- /bin/sh -c 'hostname >/tmp/host; ps -o pid,args >/tmp/ps; echo hi >/etc/from-container' && wait_for 10 x -- test -s $upper/tmp/ps && x -- cat $upper/tmp/ps >&2 && [ \"\$(x -- cat $upper/tmp/host)\" = penguin ] && x -- grep -q '^ *1 garcon' $upper/tmp/ps && [ \"\$(x -- grep -c . $upper/tmp/ps)\" -le 4 ] && x -- test -f $upper/etc/from-container && ! x -- test -e /etc/from-container"
check "the container has a cgroup of its own (/containers/penguin), where its processes are" \
  bash -c "p=\$(vmtoolsctl container list demo --json | grep -o '\"pid\" *: *[0-9]*' | grep -o '[0-9]*\$') && x -- test -f /sys/fs/cgroup/containers/penguin/cgroup.procs && x -- grep -qx \$p /sys/fs/cgroup/containers/penguin/cgroup.procs && [ \"\$(x -- cat /proc/\$p/cgroup)\" = 0::/containers/penguin ]"
check "the container does not see the containers' changes kept in the guest's / (its own or others')" \
  bash -c "x -- mkdir -p /var/lib/vmtools/containers/other && x -- touch /var/lib/vmtools/containers/other/secret && vmtoolsctl app launch demo penguin -- /bin/sh -c 'ls -A /var/lib/vmtools/containers >/tmp/seen; echo done >>/tmp/seen' && wait_for 10 x -- grep -q done $upper/tmp/seen && [ \"\$(x -- cat $upper/tmp/seen)\" = done ]"

png=iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==
install_app="mkdir -p /usr/share/applications /usr/share/icons/hicolor/48x48/apps && echo $png | base64 -d >/usr/share/icons/hicolor/48x48/apps/demo-sleeper.png && printf '[Desktop Entry]\nType=Application\nName=Sleeper\nComment=Sleeps\nIcon=demo-sleeper\nExec=/bin/sleep 300\nMimeType=text/plain;\n' >/tmp/d && mv /tmp/d /usr/share/applications/demo-sleeper.desktop"
export install_app
check "installing a .desktop file in the container: garcon tells cicerone, ApplicationListChanged is signalled" \
  bash -c "vmtoolsctl app launch demo penguin -- /bin/sh -c \"\$install_app\" && wait_for 20 signal ApplicationListChanged penguin"
check "vmtoolsctl app list shows it with its name and Exec" \
  bash -c "vmtoolsctl app list demo penguin | tee /dev/stderr | grep -q '^demo-sleeper.desktop  *Sleeper  */bin/sleep 300'"
check "vmtoolsctl app icon writes its PNG (the same bytes)" \
  bash -c "cd $work && vmtoolsctl app icon demo penguin demo-sleeper.desktop && [ \"\$(base64 -w0 demo-sleeper.png)\" = $png ]"
check "LaunchApplication by desktop file ID starts it in the container (its process list shows it)" \
  bash -c "vmtoolsctl app launch demo penguin demo-sleeper.desktop && vmtoolsctl app launch demo penguin -- /bin/sh -c 'ps -o args >/tmp/ps2' && wait_for 10 x -- grep -q '^/bin/sleep 300' $upper/tmp/ps2"
check "garcon open-url in the container reaches the host as OpenUrlRequested" \
  bash -c "vmtoolsctl app launch demo penguin -- /usr/bin/garcon open-url https://example.org/from-penguin && wait_for 20 signal OpenUrlRequested https://example.org/from-penguin"

check "a garcon with a token no container has is refused, and cicerone logs it" \
  bash -c "x -- sh -c 'echo 0000 >/tmp/bad; garcon --token-file /tmp/bad --listen vsock:9999' 2>&1 | tee /dev/stderr | grep -q 'refused: no container of VM demo has this token' && journalctl -u vmtools-cicerone --no-pager | grep -q 'refused ContainerReady from VM demo: a token no container has'"
check "a garcon in another VM (CID 4) presenting penguin's right token is refused, and logged as such" \
  bash -c "c StartVm 'sa{sv}' other 1 memory_mib u 384 >/dev/null && t=\$(ci GetContainerToken ss demo penguin | cut -d'\"' -f2) && m=\$(c GetVmInfo s other | grep -o '\"maitred_socket\" s \"[^\"]*\"' | cut -d'\"' -f4) && timeout 60 vmtoolsctl exec --socket \$m -- sh -c \"echo \$t >/tmp/t; garcon --token-file /tmp/t --listen vsock:9999\" 2>&1 | grep -q 'refused: no container of VM other has this token' && journalctl -u vmtools-cicerone --no-pager | grep -q 'refused ContainerReady from VM other: it presented the token of container penguin of VM demo'"
c StopVm s other >/dev/null 2>&1
check "bad requests get named errors: a bad name, an unknown container, a second start" \
  bash -c "vmtoolsctl container create demo Bad_Name 2>&1 | grep -q \"container name 'Bad_Name'\" && vmtoolsctl container start demo nothere 2>&1 | grep -q 'no container nothere of VM demo' && vmtoolsctl container start demo penguin 2>&1 | grep -q 'already running' && vmtoolsctl app launch demo penguin nothere.desktop 2>&1 | grep -q 'no application with desktop file ID nothere.desktop (NotFound)'"

check "vmtoolsctl container stop: ContainerStopped (requested), nothing of it left in the guest" \
  bash -c "vmtoolsctl container stop demo penguin && signal ContainerStopped requested && vmtoolsctl container list demo | grep -q '^penguin  *stopped ' && ! x -- pgrep -f 'sleep 300' && ! x -- grep -q ' /var/lib/vmtools/containers/penguin/root ' /proc/mounts"
check "started again, it keeps its changes (the installed application is still there)" \
  bash -c "vmtoolsctl container start demo penguin && vmtoolsctl app list demo penguin | grep -q '^demo-sleeper.desktop '"
check "systemctl restart vmtools-cicerone: the new cicerone takes over the running container (its applications, its token)" \
  bash -c "t=\$(ci GetContainerToken ss demo penguin) && systemctl restart vmtools-cicerone && journalctl -u vmtools-cicerone --no-pager | grep -q 're-adopted container penguin of VM demo' && [ \"\$(ci GetContainerToken ss demo penguin)\" = \"\$t\" ] && vmtoolsctl app list demo penguin | grep -q '^demo-sleeper.desktop ' && vmtoolsctl app launch demo penguin -- /bin/sh -c 'mkdir -p /usr/share/applications && cp /usr/share/applications/demo-sleeper.desktop /usr/share/applications/demo-copy.desktop' && wait_for 20 signal ApplicationListChanged penguin && vmtoolsctl app list demo penguin | grep -q '^demo-copy.desktop '"
check "a container whose garcon is killed (no goodbye) is found stopped by container list (ContainerStopped ended), and starts again" \
  bash -c "p=\$(vmtoolsctl container list demo --json | grep -o '\"pid\" *: *[0-9]*' | grep -o '[0-9]*\$') && x -- kill -9 \$p && wait_for 20 listed_stopped && signal ContainerStopped ended && vmtoolsctl container start demo penguin"
# The guest's shutdown ends garcon (ContainerShutdown) or, should it not get to say so, the VM's
# end does (vm-stopped): either way one ContainerStopped.
stopped_before=$(grep -c 'Member=ContainerStopped' "$work/signals")
more_stopped() { [ "$(grep -c 'Member=ContainerStopped' "$work/signals")" -gt "$stopped_before" ]; }
export stopped_before; export -f more_stopped
check "StopVm: the container stops with its VM (ContainerStopped), the listener goes" \
  bash -c "c StopVm s demo && wait_for 20 more_stopped && ! test -e /run/vmtools/demo/vsock.sock_8889 && vmtoolsctl container list demo | grep -q '^penguin  *stopped '"
kill $monitor 2>/dev/null
finish
