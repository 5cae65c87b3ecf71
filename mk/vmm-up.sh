#!/bin/sh
# Starts a libvirt daemon when none answers at QUBES_VMM_URI (default
# qemu:///system), installing libvirt and QEMU from Debian first when they
# are missing, and sets it up as the project runs it. Idempotent: a daemon
# that answers with that set-up is left alone.
#
# The set-up (qemu.conf): QEMU runs as libvirt-qemu, never root, with
# libvirt's DAC labelling (each VM's images, kernel and logs are chowned to
# that user for the run and given back after), QEMU's seccomp sandbox and a
# mount namespace of its own, without libvirt's cgroups (README: How QEMU
# is confined).
# Its output and the guests' serial logs go through virtlogd, which caps
# each log at LOG_MAX bytes plus one older file of as much (virtlogd.conf).
#
# Without systemd: virtlogd runs as a daemon, and libvirtd in the foreground
# under `tini -s`, a child subreaper that reaps QEMU at once when it exits, so
# that destroying a domain does not wait for PID 1 to reap it. A libvirtd
# that this script started with another set-up is restarted; running
# domains survive that.
set -eu
uri=${QUBES_VMM_URI:-qemu:///system}
case $uri in
    test:*) exit 0 ;;           # libvirt's in-process test driver needs no daemon
esac
LOG_MAX=1048576

answers() { virsh -c "$uri" version >/dev/null 2>&1; }
if [ "$(id -u)" != 0 ]; then
    command -v virsh >/dev/null 2>&1 && answers && exit 0
    echo "vmm-up: no libvirt daemon answers at $uri, and starting one needs root" >&2
    exit 1
fi

# iptables: libvirt 9.0 applies the rules of its networks with it, even of
# an isolated one; nftables: the VMs' firewall chains (orchestrator/vmfw.h),
# applied through its library, libnftables1, which vmfw loads at run time.
pkgs="libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 qemu-utils tini
      iptables nftables libnftables1"
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

getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
getent passwd libvirt-qemu >/dev/null ||
    useradd -r -g libvirt-qemu -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu

# QEMU's user may use /dev/kvm, as on a host where udev gives it to group
# kvm: else libvirt finds KVM in its cached QEMU capabilities but not usable
# by that user, and probes QEMU anew (15 s here) at every domain start.
if [ -c /dev/kvm ]; then
    getent group kvm >/dev/null || groupadd -r kvm
    id -nG libvirt-qemu | tr ' ' '\n' | grep -qx kvm || usermod -a -G kvm libvirt-qemu
    chgrp kvm /dev/kvm
    chmod 0660 /dev/kvm
fi

changed=""
setting() {  # setting FILE KEY VALUE: one uncommented `KEY = VALUE` line
    mkdir -p "$(dirname "$1")"
    touch "$1"
    grep -qxF "$2 = $3" "$1" && return 0
    if grep -q "^[[:space:]]*$2[[:space:]]*=" "$1"; then
        sed -i "s|^[[:space:]]*$2[[:space:]]*=.*|$2 = $3|" "$1"
    else
        echo "$2 = $3" >> "$1"
    fi
    changed="$changed $(basename "$1"):$2"
}
setting /etc/libvirt/qemu.conf user '"libvirt-qemu"'
setting /etc/libvirt/qemu.conf group '"libvirt-qemu"'
setting /etc/libvirt/qemu.conf dynamic_ownership 1
setting /etc/libvirt/qemu.conf seccomp_sandbox 1
setting /etc/libvirt/qemu.conf stdio_handler '"logd"'
# No cgroups per QEMU: they cost every domain start about 50 ms here and
# hold no limit of ours; the fence around device nodes is QEMU's private
# /dev (its mount namespace), which stays (README: How QEMU is confined).
setting /etc/libvirt/qemu.conf cgroup_controllers '[ ]'
setting /etc/libvirt/virtlogd.conf max_size $LOG_MAX
setting /etc/libvirt/virtlogd.conf max_backups 1

mkdir -p /var/run/libvirt /var/log/libvirt/qemu /var/lib/libvirt/qemu
logd_pid=/var/run/virtlogd.pid
if [ -s $logd_pid ] && kill -0 "$(cat $logd_pid)" 2>/dev/null; then
    case $changed in  # re-executes itself, keeping its open logs
        *virtlogd.conf*) kill -USR1 "$(cat $logd_pid)" ;;
    esac
else
    echo "vmm-up: starting virtlogd" >&2
    virtlogd -d -p $logd_pid
fi

ours=$(pgrep -f '^tini -s -- libvirtd' || true)
if answers; then
    case $changed in
        *qemu.conf*) ;;
        *) exit 0 ;;
    esac
    if [ -z "$ours" ]; then
        echo "vmm-up: changed$changed; restart libvirtd for it to apply" >&2
        exit 0
    fi
    echo "vmm-up: changed$changed; restarting the libvirtd it started" >&2
    kill "$ours"
    i=0
    while kill -0 "$ours" 2>/dev/null; do
        i=$((i + 1))
        [ $i -gt 60 ] && { echo "vmm-up: libvirtd (pid $ours) did not stop within 30 s" >&2; exit 1; }
        sleep 0.5
    done
fi

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
