#!/bin/sh
# The demo behind `make demo`: a template HVM and a child made from the test
# guest, started on a real libvirt daemon, the exclusion between them, a
# command in each, a NetVM and a ProxyVM as guests, firewall rules enforced,
# disposable VMs (shared memory, their own MAC and IP, preloaded) and the
# database tools; narrated.
# Usage: demo/run.sh BIN-DIR GUEST-DIR
set -eu
bin=${1:?usage: demo/run.sh BIN-DIR GUEST-DIR}
guest=${2:?usage: demo/run.sh BIN-DIR GUEST-DIR}
top=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$bin:$PATH"
# QEMU runs as libvirt-qemu: it must pass through the scratch directory to
# the VM directories the tools make (root's, open to its group only).
demo_dir=$(mktemp -d /tmp/qubes-demo.XXXXXX)
chmod 0711 "$demo_dir"
export QUBES_BASE_DIR="$demo_dir/base"
export QUBES_RUN_DIR="$demo_dir/run"
export QUBES_VMM_URI=${QUBES_VMM_URI:-qemu:///system}
T=demo-template C=demo-work
cleanup() {
    qubes-prefs -s dispvm-preload 0 >/dev/null 2>&1 || true
    qubes-dvmd --stop >/dev/null 2>&1 || true
    qvm-cleanup-dispvms -q >/dev/null 2>&1 || true
    for vm in $C $T $T-dvm demo-fw demo-net; do qvm-kill "$vm" >/dev/null 2>&1 || true; done
    rm -f "/dev/shm/qubes/$T-dvm."*
    [ "${KEEP:-0}" = 1 ] || rm -rf "$demo_dir"
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@" || true; }

say "A scratch database in $QUBES_BASE_DIR, libvirt at $QUBES_VMM_URI"
show qvm-create -l red --hvm-template -r "$guest/root.img" --kernel "$guest/kernel" $T
show qvm-create -l blue -H -t $T $C
show qvm-ls

say "Start the template HVM (QEMU, TCG here); wait for the agent inside"
show qvm-start $T
show qvm-run -p $T 'echo "hello from $(uname -n), kernel $(uname -r)"; cat /etc/guest-release'
show qvm-run -p $T 'echo "installed by the template" > /etc/motd; sync'

say "A child never runs beside its template: the root it reads must not change"
show qvm-start $C
show qvm-shutdown $T

say "Start the child: its root is a copy-on-write layer over the template's"
show qvm-start $C
show qvm-run -p $C 'echo "I am $(uname -n); my root says: $(cat /etc/motd)"'
show qvm-run -p $C 'echo scratch > /etc/scratch; echo kept > /rw/notes; ls /etc/scratch /rw/notes'
show qvm-start $T
show qvm-ls

say "Restart the child: root writes are gone, the private disk stays"
show qvm-shutdown $C
show qvm-start -q $C
show qvm-run -p $C 'cat /etc/scratch 2>&1; cat /rw/notes'
show qvm-run -p $C 'exit 3'
echo "(qvm-run returned the command's exit status: 3)"

say "Stop everything"
show qvm-kill $C
show qvm-ls

say "Networks: a NetVM and a ProxyVM are guests too; the host has no address on their networks"
show qvm-create -l red --net -s -r "$guest/root.img" --kernel "$guest/kernel" demo-net
show qvm-create -l orange --proxy -s -r "$guest/root.img" --kernel "$guest/kernel" demo-fw
show qvm-prefs -s demo-fw netvm demo-net
show qubes-prefs -s default-netvm demo-fw
show qvm-prefs -s $C netvm default
show qvm-start $C
show qvm-run -p $C 'ip -4 -o addr show eth0 | awk "{print \$4}"; ip route | head -n 1'
echo "(the test's outside world, 192.0.2.1, lives inside demo-net: nothing leaves this machine)"
show qvm-run -p $C 'ping -c 1 -W 3 192.0.2.1 | grep received; nc -w 3 192.0.2.1 1234 </dev/null; nslookup test.example | grep -A 1 "^Name:"'
show ip -o addr show dev qubes-net1
show ip -o addr show dev qubes-net2
echo "(no address of the host on either: a VM can reach nothing of dom0 over IP)"

say "Firewall rules are enforced on the host side of the VM's interface, at once"
show qvm-firewall -P deny -D deny -i allow $C
show qvm-run -p $C 'ping -c 1 -W 2 192.0.2.1 >/dev/null && echo "ping: through"; nc -w 3 192.0.2.1 1234 </dev/null || echo "tcp 1234: blocked"'
show qvm-firewall -a $C 192.0.2.1/32 tcp 1234
show qvm-run -p $C 'nc -w 3 192.0.2.1 1234 </dev/null'
show qvm-firewall $C
show qvm-run -p $C 'ip addr flush dev eth0; ip addr add 10.137.2.99/24 dev eth0; ip route add default via 10.137.2.1; ping -c 1 -W 2 192.0.2.1 >/dev/null && echo through || echo "a spoofed address: blocked"'
show qvm-kill $C

say "Disposable VMs: save a booted VM once (its memory shared), a fresh copy per request"
show qvm-create-default-dvm $T
printf '$ echo '"'"'echo hello from $(uname -n)'"'"' | qfile-daemon-dvm qubes.VMShell dom0 DEFAULT red\n'
start=$(date +%s%N)
echo 'echo "hello from $(uname -n), $(ip -4 -o addr show eth0 | awk "{print \$4}")"' |
    qfile-daemon-dvm qubes.VMShell dom0 DEFAULT red || true
echo "(request to output: $(( ($(date +%s%N) - start) / 1000000 )) ms; the DispVM service, started by this"
echo " first request, made it in a worker process of its own, which tears it down now)"
(echo 'sleep 3' | qfile-daemon-dvm -q qubes.VMShell dom0 DEFAULT &)
sleep 2
show qvm-ls --memory
sleep 2
show qvm-run --dispvm "echo a second DispVM: \$(uname -n)"
echo 'echo scratch > /rw/mine' | qfile-daemon-dvm -q qubes.VMShell dom0 DEFAULT
show qvm-run -q --dispvm 'ls /rw; echo "(nothing of the previous DispVM)"'

say "Preloaded: DispVMs restored, given their identity, warmed up and paused ahead"
show qubes-prefs -s dispvm-preload 1
show qvm-create-default-dvm -q $T
show qvm-ls
start=$(date +%s%N)
echo 'echo "served by $(uname -n)"' | qfile-daemon-dvm qubes.VMShell dom0 DEFAULT || true
echo "(request to output: $(( ($(date +%s%N) - start) / 1000000 )) ms)"
printf '$ echo uname -n | qfile-daemon-dvm --timings qubes.VMShell dom0 DEFAULT   # where the time goes\n'
sleep 3
echo 'uname -n' | qfile-daemon-dvm --timings qubes.VMShell dom0 DEFAULT 2>&1 || true
show qubes-prefs -s dispvm-preload 0
sleep 2
show qvm-cleanup-dispvms
show qvm-ls

say "The database tools: typed properties, class rules, refusals"
show qvm-prefs -s $C memory 400
show qvm-prefs -s $C template $C
show qvm-create -l red -H '../etc'
show qvm-remove $T
show qvm-prefs -l $C

say "The original's qubes.xml (R2) loads and lists"
# In a database of its own: the demo's VMs are still to be stopped.
mkdir -p "$demo_dir/r2"
if cp "$top/../shared/fixtures/qubes-r2.xml" "$demo_dir/r2/qubes.xml" 2>/dev/null; then
    show env QUBES_BASE_DIR="$demo_dir/r2" qvm-ls --offline-mode
else
    echo "(fixture not found beside the project: skipped)"
fi
echo
echo "Done. The scratch directory is removed (KEEP=1 keeps it)."
