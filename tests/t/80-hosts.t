#!/bin/sh
# A second host on this machine (make host2-up: a libvirt daemon in its own
# mount namespace at qemu+tcp://127.0.0.2:16510/system) and the host
# registry (qvm-host): the daemon answers, a second host2-up leaves it
# alone, it sees none of this host's /tmp; qvm-host add/list/remove, list
# asking every host at once within its deadline; only root reaches host2 (a refused connection, a
# daemon that never answers), --offline-mode asking none; storage on host2
# through libvirt only (a pool, a sparse upload by stream, deletion).
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../e2e.sh"
H2=qemu+tcp://127.0.0.2:16510/system
HOST2_DIR=${HOST2_DIR:-/var/lib/qubes-host2}
listener=""
trap '[ -n "$listener" ] && kill $listener 2>/dev/null; rm -rf "$SCRATCH"' EXIT

run "$top/mk/host2-up.sh"
is "$rc" 0 "make host2-up starts the second daemon"
[ "$rc" = 0 ] || { printf '%s\n' "$out" | tail -n 10 | sed 's/^/#   /'; done_testing; exit 1; }
ok "$(virsh -c $H2 version >/dev/null 2>&1; echo $?)" "it answers at $H2"
# It takes no authentication: only root's connections may reach it.
run setpriv --reuid=nobody --regid=nogroup --clear-groups virsh -c $H2 version
like "$rc/$out" "1/" "another local user's connection is refused"
like "$out" "Connection refused" "by the host2 guard, at the TCP level"
pid=$(cat "$HOST2_DIR/libvirtd.pid")
run "$top/mk/host2-up.sh"
is "$rc/$out/$(cat "$HOST2_DIR/libvirtd.pid")" "0//$pid" "a second host2-up leaves the running daemon alone, silently"
# What host2 sees: its own /tmp, not ours. A domain whose disk is one of
# our files cannot be made there.
touch "$SCRATCH/ours.img"
cat > "$SCRATCH/probe.xml" <<XML
<domain type='qemu'><name>host2-probe-$$</name><memory unit='MiB'>32</memory>
<os><type arch='x86_64' machine='q35'>hvm</type></os>
<devices><disk type='file' device='disk'><source file='$SCRATCH/ours.img'/>
<target dev='vda' bus='virtio'/></disk></devices></domain>
XML
run virsh -c $H2 create --paused "$SCRATCH/probe.xml"
virsh -c $H2 destroy host2-probe-$$ >/dev/null 2>&1
ok "$([ "$rc" != 0 ]; echo $?)" "host2 cannot open a file in this host's /tmp"
like "$out" "$SCRATCH/ours.img" "and says which"

run qvm-host add h2 $H2
is "$rc" 0 "qvm-host add h2 URI"
like "$(cat "$QUBES_BASE_DIR/qubes-hosts.xml")" "<host name=\"h2\" uri=\"$H2\"/>" \
     "registered in qubes-hosts.xml beside qubes.xml"
run qvm-host add h2b $H2
like "$rc/$out" "1/qvm-host: error: URI $H2 is host 'h2' already" "a URI is one host"
run qvm-host add local qemu+tcp://127.0.0.9/system
is "$rc" 1 "'local' is the local host's name, never registered"

# list: the local host is the daemon of QUBES_VMM_URI; h2 answers with its
# memory (the same machine's).
run qvm-host list
is "$rc" 0 "qvm-host list"
row=$(printf '%s\n' "$out" | awk '$1 == "h2"')
ok "$(printf '%s\n' "$row" | awk '$3 == "yes" && $4 > 0 && $5 >= $4 && $6 == 0 {f = 1} END {exit !f}'; echo $?)" \
   "h2 answers: free and total memory, no VM of ours running ($row)"
like "$(printf '%s\n' "$out" | awk '$1 == "local"')" "$QUBES_VMM_URI" "the local host is listed with its URI"

# A daemon that takes the connection and never answers: the deadline.
port=$((20000 + $$ % 20000))
"$HELPERS/silent-listener" 127.0.0.3 $port 60 > "$SCRATCH/listener.out" &
listener=$!
for i in $(seq 50); do [ -s "$SCRATCH/listener.out" ] && break; sleep 0.1; done
qvm-host -q add mute qemu+tcp://127.0.0.3:$port/system
t0=$(date +%s%N)
run timeout 30 qvm-host list --timeout 2
t1=$(date +%s%N)
is "$rc" 0 "list with a silent host still succeeds"
like "$(printf '%s\n' "$out" | awk '$1 == "mute"')" "no   " "the silent host is not reachable"
like "$out" "no answer within 2 s" "named with the deadline"
like "$(printf '%s\n' "$out" | awk '$1 == "h2"')" "yes" "and h2 is listed as answering all the same"
diag "qvm-host list with a silent host and --timeout 2: $(((t1 - t0) / 1000000)) ms"
ok "$([ $(((t1 - t0) / 1000000)) -lt 10000 ]; echo $?)" "it returned (within the 30 s guard: not hung)"

# Storage on host2 through its daemon alone: a pool there, a sparse file
# uploaded as a volume (its holes travel as lengths), read back equal.
V="$HELPERS/vol-upload"
img=$SCRATCH/sparse.img
truncate -s 64M "$img"
head -c 1048576 /dev/urandom | dd of="$img" conv=notrunc status=none
head -c 1048576 /dev/urandom | dd of="$img" bs=1M seek=40 conv=notrunc status=none
run "$V" $H2 qubes /var/lib/qubes/pool vol-$$ "$img"
is "$rc" 0 "a 64 MiB image with 2 MiB of data uploaded to host2's pool"
is "$(echo "$out" | awk '{print $2}')" 2097152 "only its data travelled (2 MiB), the holes as lengths"
info=$(virsh -c $H2 vol-info --bytes --pool qubes vol-$$ 2>&1)
cap=$(echo "$info" | awk '/^Capacity/ {print $2}') alloc=$(echo "$info" | awk '/^Allocation/ {print $2}')
ok "$([ "$cap" = 67108864 ] && [ "$alloc" -le 4194304 ]; echo $?)" \
   "on host2 it is 64 MiB, sparse: $alloc bytes allocated"
ok "$([ -f "$HOST2_DIR/qubes/pool/vol-$$" ] && [ ! -e "/var/lib/qubes/pool/vol-$$" ]; echo $?)" \
   "it lives in host2's /var/lib/qubes/pool, not in this host's"
virsh -c $H2 vol-download --sparse --pool qubes vol-$$ "$SCRATCH/back.img" >/dev/null 2>&1
is "$(md5sum < "$SCRATCH/back.img")" "$(md5sum < "$img")" "downloaded again, it is the same bytes"
run "$V" $H2 qubes /var/lib/qubes/pool vol-$$ "$img"
like "$rc/$out" "1/vol-upload: volume vol-$$ in pool qubes: cannot create the volume" \
     "a second upload of the same name is refused, named"
run "$V" $H2 qubes /var/lib/qubes/pool ../x "$img"
like "$rc/$out" "1/vol-upload: volume '../x' in pool 'qubes': not a name" "a name that is a path is refused"
run "$V" $H2 qubes /var/lib/qubes/pool empty-$$ --empty 1073741824
is "$rc/$(echo "$out" | awk '{print $2}')" "0/0" "an empty 1 GiB volume: nothing travels"
"$V" $H2 qubes /var/lib/qubes/pool empty-$$ --delete >/dev/null
run "$V" $H2 qubes /var/lib/qubes/pool vol-$$ --delete
is "$rc/$(virsh -c $H2 vol-list qubes | grep -c -e "vol-$$" -e "empty-$$")" "0/0" "deleted, they are gone"
run "$V" $H2 qubes /var/lib/qubes/pool vol-$$ --delete
is "$rc" 0 "deleting what is gone is no error"
head -c 16777216 /dev/urandom > "$SCRATCH/full.img"
run "$V" $H2 qubes /var/lib/qubes/pool full-$$ "$SCRATCH/full.img"
ms=$(echo "$out" | awk '{print $3}')
diag "upload of 16 MiB of data to host2: ${ms} ms, $((16 * 1000 / (ms > 0 ? ms : 1))) MB/s"
"$V" $H2 qubes /var/lib/qubes/pool full-$$ --delete >/dev/null

# h2 stopped: refused at once, named; back again.
"$top/mk/host2-up.sh" stop >/dev/null 2>&1
run qvm-host list --timeout 5
like "$(printf '%s\n' "$out" | awk '$1 == "h2"')" "Connection refused" "a stopped h2: the refusal, named"
run "$V" $H2 qubes /var/lib/qubes/pool vol-$$ "$img"
like "$rc/$out" "1/vol-upload: cannot connect to the hypervisor ($H2)" "an upload to a stopped host: named"
run "$top/mk/host2-up.sh"
is "$rc" 0 "host2-up starts it again"
like "$(qvm-host list | awk '$1 == "h2"')" "yes" "and h2 answers again"

# --offline-mode asks nobody: the hosts' columns stay empty, with the
# hypervisor's address pointing nowhere.
run env QUBES_VMM_URI="qemu+unix:///system?socket=$SCRATCH/none" qvm-host --offline-mode list
is "$rc/$(printf '%s\n' "$out" | awk '$1 == "h2" {print $3}')" "0/-" "--offline-mode: listed, not asked"

run qvm-host remove h2
is "$rc" 0 "qvm-host remove h2"
is "$(qvm-host --offline-mode list | awk '$1 == "h2"' | wc -l)" 0 "h2 is gone from the list"
run qvm-host remove h2
like "$rc/$out" "1/qvm-host: error: no host named 'h2'" "removing it twice: named"
done_testing
