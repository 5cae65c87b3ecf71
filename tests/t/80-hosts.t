#!/bin/sh
# A second host on this machine (make host2-up: a libvirt daemon in its own
# mount namespace at qemu+tcp://127.0.0.2:16510/system) and the host
# registry (qvm-host): the daemon answers, a second host2-up leaves it
# alone, it sees none of this host's /tmp; qvm-host add/list/remove, list
# asking every host at once within its deadline; only root reaches host2 (a refused connection, a
# daemon that never answers), --offline-mode asking none; storage on host2
# through libvirt only (a pool, a sparse upload by stream, deletion); a VM
# created on host2 (qvm-create --host): its images volumes there, none here;
# started there, its agent reached through qubes-channel-relay (qvm-run),
# killed; what is refused for it yet, its removal.
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

# A VM on h2 (qvm-create --host): its images are volumes of h2's pool,
# uploaded sparse; its settings stay here, without an image.
T=rt$$
vols() { virsh -c $H2 vol-list qubes 2>/dev/null | awk -v p="$1." 'index($1, p) == 1 {print $1}' | sort | tr '\n' ' '; }
run qvm-create -l red --hvm-template --host h2 -r "$GUEST/root.img" --kernel "$GUEST/kernel" $T
is "$rc" 0 "qvm-create --host h2: a template HVM on h2"
like "$out" "on host h2" "and it says where"
is "$(vols $T)" "$T.initramfs $T.private.img $T.root.img $T.vmlinuz " \
   "its root, private image and kernel are volumes of h2's pool"
virsh -c $H2 vol-download --sparse --pool qubes $T.root.img "$SCRATCH/root.back" >/dev/null 2>&1
is "$(md5sum < "$SCRATCH/root.back")" "$(md5sum < "$GUEST/root.img")" "the root volume holds -r's image"
alloc=$(virsh -c $H2 vol-info --bytes --pool qubes $T.root.img | awk '/^Allocation/ {print $2}')
ok "$([ "$alloc" -le $(( $(du -B1 "$GUEST/root.img" | cut -f1) + 4194304 )) ]; echo $?)" \
   "sparse there too ($alloc bytes allocated)"
ok "$([ -f "$HOST2_DIR/qubes/pool/$T.private.img" ]; echo $?)" "in host2's /var/lib/qubes/pool"
dir=$(qvm-prefs -g $T dir)
is "$(find "$dir" -name '*.img' -o -name vmlinuz -o -name initramfs | wc -l)/$(ls -d "$dir")" "0/$dir" \
   "its directory here holds no image"
is "$(qvm-prefs -g $T host)/$(qvm-prefs -g $T root_img)" "h2/h2:qubes/$T.root.img" \
   "qvm-prefs: host h2, root_img HOST:POOL/VOLUME"
qvm-create -q -l red --hvm-template l$$
is "$(qvm-prefs -g l$$ host)/$(qvm-prefs -g l$$ root_img)" "local/$(qvm-prefs -g l$$ dir)/root.img" \
   "a VM made without --host: on the local host, its images here"
run qvm-prefs -s $T host local
like "$rc/$out" "1/qvm-prefs: error: host: '$T' lives where its images are" "the host cannot be set afterwards"
# Started there: the domain runs on host2, not here; its agent's channel
# reaches the local tools through qubes-channel-relay (libvirt's channel
# streams), as a local VM's socket would.
run qvm-start $T
is "$rc" 0 "qvm-start: a VM on h2 starts there"
is "$(virsh -c $H2 domstate $T 2>&1)/$(virsh -c "$QUBES_VMM_URI" domstate $T >/dev/null 2>&1; echo $?)" \
   "running/1" "its domain runs on host2, none here"
run qvm-run -p $T 'cat /proc/cmdline'
is "$rc" 0 "qvm-run -p reaches it through the relay"
like "$out" "qubes.name=$T" "and runs in it (its kernel command line)"
like "$(qvm-ls | awk -v n="[$T]" '$1 == n')" "Running" "qvm-ls: Running (asked of h2)"
relay=$(pgrep -f "qubes-channel-relay $T\$")
ok "$([ -n "$relay" ] && [ -S "$QUBES_RUN_DIR/vms/$T/agent.sock" ]; echo $?)" \
   "the relay serves $QUBES_RUN_DIR/vms/$T/agent.sock"
like "$(virsh -c $H2 dumpxml $T | grep -A2 "<channel type='unix'>")" "/var/lib/libvirt/qemu/channel/" \
     "the channel's socket is host2's own (libvirt's channel directory there)"
run qvm-start $T
like "$rc/$out" "1/qvm-start: error: " "a second start is refused"
run qvm-kill $T
is "$rc/$(virsh -c $H2 list --all --name | grep -c "^$T\$")" "0/0" "qvm-kill stops it on h2"
like "$(qvm-ls | awk -v n="[$T]" '$1 == n')" "Halted" "qvm-ls: Halted"
for i in $(seq 40); do kill -0 $relay 2>/dev/null || break; sleep 0.1; done
ok "$(kill -0 $relay 2>/dev/null; [ $? != 0 ] && [ ! -e "$QUBES_RUN_DIR/vms/$T/agent.sock" ]; echo $?)" \
   "the relay ends with the domain, its socket gone"
run qvm-host remove h2
like "$rc/$out" "1/qvm-host: error: cannot remove host 'h2': VMs live there ('$T'" \
     "qvm-host remove refuses a host VMs live on, naming one"

# A VM based on T, on h2 too: its private image a copy made there, its root
# a copy-on-write layer over T's root volume made there at each start; T
# and it never run at once; the host's start lock.
C=c$$
run qvm-create -l red -H -t $T --host h2 $C
is "$rc/$(vols $C)" "0/$C.private.img " "a VM based on T on h2: its private image copied there"
run qvm-create -l red -H -t $T y$$
like "$rc/$out" "1/qvm-create: error: the template '$T' lives on host 'h2'" \
     "one here based on the template on h2: refused, named"
qvm-remove -q l$$
run qvm-start $C
is "$rc/$(virsh -c $H2 domstate $C 2>&1)" "0/running" "it starts on h2"
like "$(virsh -c $H2 vol-dumpxml --pool qubes $C.volatile.img)" "$T.root.img" \
     "from a layer made there over T's root volume"
like "$(qvm-run -p $C 'cat /proc/cmdline')" "qubes.name=$C" "its agent answers through its relay"
qvm-run -p $C 'echo out; echo err >&2; exit 7' > "$SCRATCH/o" 2> "$SCRATCH/e"
is "$?/$(cat "$SCRATCH/o")/$(cat "$SCRATCH/e")" "7/out/err" \
   "qvm-run: its output, its error stream and its exit status, through the relay"
qvm-run -p $C 'echo root-write > /etc/child-root; echo priv-write > /rw/child-priv; sync' >/dev/null
run qvm-shutdown --wait $C
is "$rc/$(virsh -c $H2 list --name | grep -c "^$C\$")" "0/0" "qvm-shutdown --wait: it powers off on h2"
qvm-start -q $C
is "$(qvm-run -p $C 'cat /etc/child-root 2>/dev/null || echo gone')" "gone" \
   "its root writes are gone after its next start (a new layer)"
is "$(qvm-run -p $C 'cat /rw/child-priv')" "priv-write" "its private disk's survive"
# h2's daemon silent (SIGSTOP: the kernel takes connections, nobody
# answers): a command gives up on it within the deadline, naming it.
h2pid=$(cat "$HOST2_DIR/libvirtd.pid")
h2pid="$h2pid $(pgrep -P $h2pid -x libvirtd)"     # the daemon under its init
kill -STOP $h2pid
t0=$(date +%s%N)
run timeout 30 env QUBES_HOST_TIMEOUT=2 qvm-start $T
t1=$(date +%s%N)
like "$rc/$out" "1/qvm-start: error: '$T' lives on host 'h2': host 'h2' ($H2) does not answer: no answer within 2 s" \
     "a start on a silent host: refused, named"
ok "$([ $(( (t1 - t0) / 1000000 )) -lt 6000 ]; echo $?)" "within the deadline ($(( (t1 - t0) / 1000000 )) ms, QUBES_HOST_TIMEOUT=2)"
run timeout 30 env QUBES_HOST_TIMEOUT=2 qvm-ls
is "$rc" 0 "qvm-ls still lists"
like "$(printf '%s\n' "$out" | awk -v n="[$T]" '$1 == n')" "NA" "the state of h2's halted VM unknown"
like "$out" "qvm-ls: warning: power state unknown: '$C' lives on host 'h2': host 'h2'" "and says why"
kill -CONT $h2pid
like "$(qvm-run -p $C 'echo back')" "back" "h2 answering again, its VM still answers through its relay"
# Its relay killed: its qrexec-daemon loses the channel and ends; a start
# serves the running VM again (no new domain), a second one is refused.
id=$(virsh -c $H2 domid $C)
pkill -KILL -f "qubes-channel-relay $C\$"
for i in $(seq 50); do pgrep -f "qrexec-daemon $C\$" >/dev/null || break; sleep 0.1; done
run qvm-start $C
is "$rc/$(virsh -c $H2 domid $C)" "0/$id" "qvm-start of the running VM without its relay: served again, the same domain"
like "$out" "$C runs without its qrexec daemon: serving it again" "and says so"
like "$(qvm-run -p $C 'echo again')" "again" "it answers again"
run qvm-start $C
like "$rc/$out" "1/qvm-start: error: " "a start of the served VM is refused"
run qvm-start $T
like "$rc/$out" "1/qvm-start: error: cannot start '$T': Cannot start HVM template while VMs based on it are running ('$C')" \
     "T cannot start while it runs (named)"
qvm-kill $C
# The start lock of h2, as another orchestrator's start would hold it.
"$V" $H2 qubes /var/lib/qubes/pool qubes-start.lock --empty 512 >/dev/null
( qvm-start $C > "$SCRATCH/start.out" 2>&1; echo $? > "$SCRATCH/start.rc" ) &
sleep 3
is "$(virsh -c $H2 list --name | grep -c "^$C\$")/$(cat "$SCRATCH/start.rc" 2>/dev/null)" "0/" \
   "a start waits while h2's start lock is held"
"$V" $H2 qubes /var/lib/qubes/pool qubes-start.lock --delete >/dev/null
for i in $(seq 300); do [ -s "$SCRATCH/start.rc" ] && break; sleep 0.1; done
is "$(cat "$SCRATCH/start.rc")/$(virsh -c $H2 domstate $C 2>&1)" "0/running" "and goes on once it is free"
is "$(virsh -c $H2 vol-list qubes | grep -c qubes-start.lock)" 0 "and frees it"
qvm-kill $C
run qvm-remove $C
is "$rc/$(vols $C)" "0/" "its removal deletes its volumes there, the layer too"

# qvm-clone of a VM on h2: its volumes copied there (nothing travels), its
# settings here; the clone is a template on h2 too.
run qvm-clone -q $T k$$
is "$rc/$(vols k$$)/$(qvm-prefs -g k$$ host)" "0/k$$.initramfs k$$.private.img k$$.root.img k$$.vmlinuz /h2" \
   "qvm-clone: the clone's volumes copied on h2, the clone on h2"
virsh -c $H2 vol-download --sparse --pool qubes k$$.root.img "$SCRATCH/k.back" >/dev/null 2>&1
virsh -c $H2 vol-download --sparse --pool qubes $T.root.img "$SCRATCH/t.back" >/dev/null 2>&1
is "$(md5sum < "$SCRATCH/k.back")" "$(md5sum < "$SCRATCH/t.back")" "its root volume equal to the source's"
run qvm-clone -q $T k$$
like "$rc/$(vols k$$)" "1/" "a second clone of that name: refused"
qvm-remove -q k$$
is "$(vols k$$)" "" "and removed, its volumes go"
# A guest writes what it likes to its raw private disk, a qcow2 header too
# (here put there with vol-upload), and h2's pool then sees the volume as
# qcow2: copying it as qcow2 would follow a backing file the guest named,
# a file of h2. The copy is refused, and nothing of the clone stays.
qemu-img create -q -f qcow2 -b /etc/shadow -F raw "$SCRATCH/evil.qcow2" 1M
virsh -c $H2 vol-upload --pool qubes $T.private.img "$SCRATCH/evil.qcow2" >/dev/null 2>&1
run qvm-clone -q $T k$$
like "$rc/$out" "1/" "qvm-clone of a VM whose raw private disk looks like qcow2 there: refused"
like "$out" "$T.private.img in pool qubes is qcow2" "saying the host sees it as qcow2"
is "$(vols k$$)/$(qvm-ls --raw-list | grep -cx k$$)" "/0" "and nothing of the clone is left"

# A template here, a VM based on it on h2: the template's root and kernel
# are copied there at the VM's first start, again only once they changed;
# the two never run at once, across the hosts.
LT=lt$$ LC=lc$$
qvm-create -q -l red --hvm-template -r "$GUEST/root.img" --kernel "$GUEST/kernel" $LT
run qvm-create -l red -H -t $LT --host h2 $LC
is "$rc/$(vols $LC)/$(vols $LT)" "0/$LC.private.img /" "a VM on h2 based on a template here: its private image there"
run qvm-start $LC
is "$rc/$(vols $LT)" "0/$LT.initramfs $LT.root.img $LT.vmlinuz " "its start copies the template's root and kernel there"
like "$out" "Sending the root image and kernel of $LT to host h2" "and says so"
like "$(qvm-run -p $LC 'cat /proc/cmdline')" "qubes.name=$LC" "it runs on h2"
run qvm-start $LT
like "$rc/$out" "Cannot start HVM template while VMs based on it are running ('$LC')" \
     "the template here cannot start while its child runs on h2"
qvm-kill $LC
qvm-start -q $LT
run qvm-start $LC
like "$rc/$out" "1/qvm-start: error: cannot start '$LC': Cannot start the HVM while its template is running ('$LT')" \
     "nor the child on h2 while the template runs here"
qvm-run -p $LT 'echo template-change > /etc/tpl-mark; sync' >/dev/null
qvm-shutdown -q --wait $LT
run qvm-start $LC
like "$rc/$out" "Sending the root image and kernel of $LT" "the template changed: copied again"
is "$(qvm-run -p $LC 'cat /etc/tpl-mark')" "template-change" "and the child sees the change"
qvm-kill $LC
run qvm-start $LC
case "$out" in *Sending*) r=1 ;; *) r=$rc ;; esac
ok "$r" "unchanged: not copied again"
qvm-kill $LC
qvm-remove -q $LC
run qvm-remove $LT
is "$rc/$(vols $LT)" "0/" "removing the template removes its copies on h2"
run qvm-create -l red --hvm-template --host nosuch n$$
like "$rc/$out" "1/qvm-create: error: no host 'nosuch' in $QUBES_BASE_DIR/qubes-hosts.xml" \
     "an unknown host: named, with the registry"
run qvm-create -l red --hvm-template --host h2 -R "$SCRATCH/x" n$$
like "$rc/$out" "1/qvm-create: error: --host h2: -R moves" "-R is refused for another host"
# A failure midway (the private volume's name taken) undoes the upload.
"$V" $H2 qubes /var/lib/qubes/pool b$$.private.img --empty 1048576 >/dev/null
run qvm-create -l red --hvm-template --host h2 -r "$GUEST/root.img" b$$
like "$rc/$out" "1/qvm-create: error: volume b$$.private.img in pool qubes: cannot create" \
     "a volume in the way: named"
is "$(vols b$$)/$(qvm-ls --raw-list | grep -c "^b$$\$")/$(ls -d "$(dirname "$dir")/b$$" 2>/dev/null)" \
   "b$$.private.img /0/" "and nothing is left: the root volume went, no record, no directory"
"$V" $H2 qubes /var/lib/qubes/pool b$$.private.img --delete >/dev/null
run env QUBES_VMM_URI="qemu+unix:///system?socket=$SCRATCH/none" qvm-create --offline-mode -l red --hvm-template --host h2 n$$
like "$rc/$out" "1/qvm-create: error: --host h2: creating a VM on another host talks to that host" \
     "offline mode contacts no host: refused"
# Removal: h2 answers first (else the volumes would be left unknown).
"$top/mk/host2-up.sh" stop >/dev/null 2>&1
run qvm-remove $T
like "$rc/$out" "1/qvm-remove: error: Cannot remove '$T': its host 'h2'" "qvm-remove with h2 down: refused, named"
is "$(qvm-ls --raw-list | grep -c "^$T\$")" 1 "and the VM is still there"
"$top/mk/host2-up.sh" >/dev/null 2>&1
run qvm-remove $T
is "$rc/$(vols $T)/$(qvm-ls --raw-list | grep -c "^$T\$")/$(ls -d "$dir" 2>/dev/null)" "0//0/" \
   "qvm-remove: its volumes on h2, its record and its directory are gone"

run qvm-host remove h2
is "$rc" 0 "qvm-host remove h2"
is "$(qvm-host --offline-mode list | awk '$1 == "h2"' | wc -l)" 0 "h2 is gone from the list"
run qvm-host remove h2
like "$rc/$out" "1/qvm-host: error: no host named 'h2'" "removing it twice: named"
done_testing
