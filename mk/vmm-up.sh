#!/bin/sh
# Starts a libvirt daemon when none answers at QUBES_VMM_URI (default
# qemu:///system), installing libvirt and QEMU from Debian first when they
# are missing. Idempotent: a daemon that answers is left alone.
#
# Without systemd, libvirtd as root needs: a libvirt-qemu user and group, and
# user/group root and stdio_handler "file" in qemu.conf (else every start
# re-probes KVM, or fails for want of virtlogd). It runs in the foreground
# under `tini -s`, a child subreaper that reaps QEMU at once when it exits, so
# that destroying a domain does not wait for PID 1 to reap it.
set -eu
uri=${QUBES_VMM_URI:-qemu:///system}
case $uri in
    test:*) exit 0 ;;           # libvirt's in-process test driver needs no daemon
esac

answers() { virsh -c "$uri" version >/dev/null 2>&1; }
command -v virsh >/dev/null 2>&1 && answers && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "vmm-up: no libvirt daemon answers at $uri, and starting one needs root" >&2
    exit 1
fi

pkgs="libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 qemu-utils tini"
missing=""
for p in $pkgs; do
    dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "vmm-up: installing:$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >&2
fi
answers && exit 0

getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
getent passwd libvirt-qemu >/dev/null ||
    useradd -r -g libvirt-qemu -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu

conf=/etc/libvirt/qemu.conf
mkdir -p /etc/libvirt
touch "$conf"
setting() {  # setting KEY VALUE: one uncommented `KEY = VALUE` line
    if grep -q "^[[:space:]]*$1[[:space:]]*=" "$conf"; then
        sed -i "s|^[[:space:]]*$1[[:space:]]*=.*|$1 = $2|" "$conf"
    else
        echo "$1 = $2" >> "$conf"
    fi
}
setting user '"root"'
setting group '"root"'
setting stdio_handler '"file"'

mkdir -p /var/run/libvirt /var/log/libvirt /var/lib/libvirt/qemu
log=/var/log/libvirt/libvirtd-qubes.log
echo "vmm-up: starting libvirtd (log: $log)" >&2
setsid tini -s -- libvirtd >"$log" 2>&1 </dev/null &

i=0
until answers; do
    i=$((i + 1))
    if [ $i -gt 120 ]; then
        echo "vmm-up: libvirtd did not answer at $uri within 60 s; see $log" >&2
        tail -n 20 "$log" >&2
        exit 1
    fi
    sleep 0.5
done
echo "vmm-up: libvirtd answers at $uri" >&2
