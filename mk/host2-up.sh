#!/bin/sh
# make host2-up: a second libvirt daemon on this machine that stands for
# another host, for the tests of VMs on remote hosts. It runs in a mount
# namespace of its own, where /etc/libvirt, /var/lib/libvirt, /run/libvirt,
# /var/cache/libvirt, /var/log/libvirt, /var/lib/qubes, /var/run/qubes, /tmp
# and /dev/shm are its own (under HOST2_DIR), so nothing of the first
# host's files is seen there; it shares the machine's network namespace and listens on
# qemu+tcp://127.0.0.2:16510/system WITHOUT AUTHENTICATION. Only root's
# connections reach it: an nftables rule (table inet qubes-host2) rejects
# those of every other local user, who would otherwise drive a root daemon.
# A test harness only; a real host is reached over TLS or SSH (README: More
# than one host).
#
# Idempotent: a daemon that answers at that address is left alone.
# `mk/host2-up.sh stop` ends the daemon (and the domains it runs).
set -eu
H=${HOST2_DIR:-/var/lib/qubes-host2}
ADDR=127.0.0.2
PORT=16510
uri="qemu+tcp://$ADDR:$PORT/system"
pidfile=$H/libvirtd.pid

answers() { virsh -c "$uri" version >/dev/null 2>&1; }

if [ "${1:-}" = stop ]; then
    if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        for d in $(virsh -c "$uri" list --name 2>/dev/null); do
            virsh -c "$uri" destroy "$d" >/dev/null 2>&1 || true
        done
        kill "$(cat "$pidfile")"
        i=0
        while kill -0 "$(cat "$pidfile")" 2>/dev/null; do
            i=$((i + 1))
            [ $i -gt 60 ] && { echo "host2-up: libvirtd did not stop within 30 s" >&2; exit 1; }
            sleep 0.5
        done
        rm -f "$pidfile"
        echo "host2-up: stopped" >&2
    fi
    logd=$H/run/libvirt/virtlogd.pid
    if [ -s "$logd" ] && kill -0 "$(cat "$logd")" 2>/dev/null; then
        kill "$(cat "$logd")"
        rm -f "$logd"
    fi
    if nft list table inet qubes-host2 >/dev/null 2>&1; then
        nft delete table inet qubes-host2
    fi
    exit 0
fi

# Root's connections only (packets to 127.0.0.2:PORT from a socket of
# another user are rejected). Made again at each call: idempotent.
guard() {
    nft -f - <<EOF
table inet qubes-host2
delete table inet qubes-host2
table inet qubes-host2 {
    chain out {
        type filter hook output priority 0; policy accept;
        ip daddr $ADDR tcp dport $PORT meta skuid != 0 reject with tcp reset
    }
}
EOF
}

if answers; then
    [ "$(id -u)" != 0 ] || guard
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "host2-up: nothing answers at $uri, and starting a daemon needs root" >&2
    exit 1
fi
# The first host's set-up (packages, the libvirt-qemu user, its qemu.conf).
QUBES_VMM_URI=qemu:///system "$(dirname "$0")/vmm-up.sh"

guard

# Its own configuration: the first host's QEMU settings, no network or
# domain definitions, TCP on 127.0.0.2 only, no TLS.
mkdir -p "$H/etc/libvirt" "$H/lib/libvirt" "$H/cache/libvirt" "$H/run/libvirt" "$H/log/libvirt" "$H/qubes" \
    "$H/run/qubes" "$H/tmp" "$H/shm"
chmod 0711 "$H"
cp /etc/libvirt/qemu.conf /etc/libvirt/virtlogd.conf "$H/etc/libvirt/"
cat > "$H/etc/libvirt/libvirtd.conf" <<EOF
# host2 (mk/host2-up.sh): tests only, no authentication.
listen_tls = 0
listen_tcp = 1
listen_addr = "$ADDR"
tcp_port = "$PORT"
auth_tcp = "none"
EOF

# A virtlogd left by a daemon that ended goes first (its pid file is the
# new one's).
logd=$H/run/libvirt/virtlogd.pid
if [ -s "$logd" ] && kill -0 "$(cat "$logd")" 2>/dev/null; then
    kill "$(cat "$logd")"
    sleep 0.2
fi
rm -f "$logd"

# The namespace's view, then virtlogd and libvirtd (under tini -s, as the
# first host's: QEMU is reaped at once). The daemon's pid is tini's.
log=$H/log/libvirtd-qubes.log
setsid unshare --mount --propagation private -- sh -c '
    set -e
    H=$1
    mkdir -p /var/lib/qubes /run/qubes
    mount --bind "$H/etc/libvirt" /etc/libvirt
    mount --bind "$H/lib/libvirt" /var/lib/libvirt
    mkdir -p /var/cache/libvirt
    mount --bind "$H/cache/libvirt" /var/cache/libvirt
    mount --bind "$H/run/libvirt" /run/libvirt
    mount --bind "$H/log/libvirt" /var/log/libvirt
    mount --bind "$H/qubes" /var/lib/qubes
    mount --bind "$H/run/qubes" /run/qubes
    mount -t tmpfs -o mode=1777 host2-tmp /tmp
    mount -t tmpfs -o mode=1777 host2-shm /dev/shm
    mkdir -p /var/log/libvirt/qemu /var/lib/libvirt/qemu
    virtlogd -d -p /run/libvirt/virtlogd.pid
    echo $$ > "$H/libvirtd.pid"
    exec tini -s -- libvirtd --listen --pid-file /run/libvirt/libvirtd.pid
' host2 "$H" >"$log" 2>&1 </dev/null &
job=$!

i=0
until answers; do
    i=$((i + 1))
    if ! kill -0 $job 2>/dev/null || [ $i -gt 120 ]; then
        echo "host2-up: libvirtd ended or did not answer at $uri within 60 s; see $log" >&2
        tail -n 20 "$log" >&2
        exit 1
    fi
    sleep 0.5
done
echo "host2-up: libvirtd answers at $uri (its files: $H)" >&2
