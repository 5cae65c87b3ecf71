#!/bin/sh
# Disposable VMs end to end on the real daemon: the savefile, fresh DispVMs
# that run a service and vanish, concurrency, isolation, killing, staleness
# and a full disk. Needs root, `make vmm-up` and `make guest`.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../e2e.sh"
T=dvt-$$
cleanup() {
    destroy_ours
    umount "$B/dvmdata" 2>/dev/null
    rm -rf "$SCRATCH" "/dev/shm/qubes/$T-dvm."*
}
trap cleanup EXIT

qvm-create -q -l red --hvm-template -r "$GUEST/root.img" --kernel "$GUEST/kernel" $T
# A network for the DispVMs: a NetVM guest holds their gateway.
N=dvt-net-$$
qvm-create -q -n -s -r "$GUEST/root.img" -k "$GUEST/kernel" -l red $N && qubes-prefs -s default-netvm $N
netid=$(qvm-prefs -g $N netid)
run qvm-create-default-dvm $T
is "$rc" 0 "qvm-create-default-dvm prepares the savefile"
[ "$rc" = 0 ] || diag "$(echo "$out" | tail -n 3)"
test -f "$B/dvmdata/$T-dvm.savefile" && test -L "$B/dvmdata/default-savefile" && test -L "$B/dvmdata/savefile-root"
ok $? "the savefile and the dvmdata links are in place"
like "$(qvm-prefs -g $T-dvm internal)" "True" "the $T-dvm VM is internal"

out=$(echo 'echo hello; uname -n' | qfile-daemon-dvm -q -t $T qubes.VMShell dom0 DEFAULT red)
rc=$?
is "$rc" 0 "qfile-daemon-dvm succeeds"
is "$(echo "$out" | head -n 1)" "hello" "the service's output comes back"
like "$(echo "$out" | tail -n 1)" "disp" "from a DispVM with its own name ($(echo "$out" | tail -n 1))"
is "$(settled)" "0/0/0" "no record, domain or file is left behind"
out=$(echo 'uname -n' | QUBES_DISPVM_FEED=fifo qfile-daemon-dvm -t $T qubes.VMShell dom0 DEFAULT 2>&1)
like "$out" "disp" "a DispVM restored from a clone fed through a FIFO works"
case $out in *"from a copy"*) ok 1 "and really came through the FIFO" ;; *) ok 0 "and really came through the FIFO" ;; esac
is "$(settled)" "0/0/0" "and leaves nothing behind (no FIFO, no writer)"
# Restored from one savefile, two DispVMs would share their random number
# generator's state: each is given a seed of its own before anything runs.
for i in 1 2; do
    echo 'head -c 16 /dev/urandom | od -An -tx1 | tr -d " \n"' |
        qfile-daemon-dvm -q -t $T qubes.VMShell dom0 DEFAULT > "$SCRATCH/rnd$i"
done
ok "$([ -s "$SCRATCH/rnd1" ] && [ "$(cat "$SCRATCH/rnd1")" != "$(cat "$SCRATCH/rnd2")" ]; echo $?)" \
   "two DispVMs of one savefile read different first bytes from /dev/urandom ($(cat "$SCRATCH/rnd1") / $(cat "$SCRATCH/rnd2"))"
# Two DispVMs at once (MODE: the savefile's memory path): each its own VM
# generation id (QEMU's vmgenid device, which the guest's kernel sees
# change), and each QEMU as libvirt-qemu in its seccomp sandbox, with no
# USB controller.
two_at_once() {
    mode=$1
    for i in 1 2; do
        echo 'ls /sys/bus/acpi/devices | grep -c QEMUVGID; sleep 6' |
            qfile-daemon-dvm -q -t $T qubes.VMShell dom0 DEFAULT > "$SCRATCH/vgid$i" &
    done
    for i in $(seq 200); do [ "$(disp_domains)" -ge 2 ] && break; sleep 0.1; done
    genids="" users="" usb=""
    for d in $(virsh list --name); do
        case $d in disp*) [ -d "$R/vms/$d" ] || continue ;; *) continue ;; esac
        g=$(virsh qemu-monitor-command "$d" '{"execute":"query-vm-generation-id"}' 2>&1 |
            sed -n 's/.*"guid":"\([^"]*\)".*/\1/p')
        genids="$genids ${g:-none}" users="$users/$(qemu_user "$d")"
        no_usb "$(qemu_devices "$d")" && usb="$usb/none" || usb="$usb/$(qemu_devices "$d")"
    done
    wait_jobs 120 "two DispVMs at once"
    saved=$(head -c 1000000 "$B/dvmdata/$T-dvm.savefile" | tr '\0' '\n' |
            sed -n 's/.*<genid>\([^<]*\)<.*/\1/p' | head -n 1)
    set -- $genids
    ok "$([ $# = 2 ] && [ "$1" != none ] && [ "$2" != none ] && [ "$1" != "$2" ] &&
          [ "$1" != "$saved" ] && [ "$2" != "$saved" ]; echo $?)" \
       "$mode: two DispVMs of one savefile have distinct VM generation ids ($genids; saved: ${saved:-none})"
    is "$(cat "$SCRATCH/vgid1") $(cat "$SCRATCH/vgid2")" "1 1" "$mode: each guest has the generation id device"
    is "$users" "/libvirt-qemu sandbox/libvirt-qemu sandbox" \
       "$mode: their QEMUs run as libvirt-qemu, in QEMU's seccomp sandbox"
    is "$usb" "/none/none" "$mode: and emulate no USB controller"
    settled >/dev/null
}
two_at_once "auto memory"
settled >/dev/null
echo 'exit 5' | qfile-daemon-dvm -q -t $T qubes.VMShell dom0 DEFAULT
is "$?" 5 "the service's exit status is returned"
settled >/dev/null
run sh -c "echo 'echo x' | QUBES_DISPVM_MIN_FREE_MIB=100000000 qfile-daemon-dvm -q -t $T qubes.VMShell dom0 DEFAULT"
like "$out" "not enough memory for a DispVM: the host has" "a request is refused when the host lacks the memory"
like "$out" "100000000 MiB are needed" "and says how much is needed"
is "$(settled)" "0/0/0" "and leaves nothing behind"
out=$(echo 'echo waited' | qfile-daemon-dvm -q --wait-teardown -t $T qubes.VMShell dom0 DEFAULT)
is "$out $(leftovers)" "waited 0/0/0" "with --wait-teardown it exits once the DispVM is gone"

out=$(qvm-run -q --dispvm=$T 'echo via-qvm-run-$(uname -n | cut -c1-4)' 2>&1)
is "$out" "via-qvm-run-disp" "qvm-run --dispvm runs a command in a fresh DispVM"
is "$(settled)" "0/0/0" "and cleans up after it"

# The record exists while the service runs.
(echo 'sleep 3; echo done' | qfile-daemon-dvm -q -t $T qubes.VMShell dom0 DEFAULT > "$SCRATCH/slow.out") &
slow=$!
for i in $(seq 100); do [ "$(disp_records)" = 1 ] && break; sleep 0.05; done
is "$(disp_records)" "1" "while the service runs, the DispVM has a record"
d=$(qvm-ls --raw-list | grep '^disp' | head -n 1)
is "$(stat -c %a "$R/vms/$d/root.qcow2")/$(stat -c %a "$R/vms/$d/private.qcow2")" "600/600" \
   "its disk layers are mode 600"
like "$(qvm-ls | grep ' disp')" "Disp" "qvm-ls lists it as a DispVM"
run qvm-start $T
like "$out" "Cannot start HVM template while VMs based on it are running" \
     "the template cannot start while a DispVM of it runs"
wait $slow
is "$(cat "$SCRATCH/slow.out")" "done" "the slow service finished"
is "$(settled)" "0/0/0" "and left nothing behind"

# A DispVM's GUI starts with it: it gets the monitor layout.
printf '2560 1440 0 0\n' > "$B/monitor-layout"
is "$(echo 'cat /tmp/qubes-monitor-layout' | qfile-daemon-dvm -q -t $T qubes.VMShell dom0 DEFAULT)" \
   "2560 1440 0 0" "a DispVM receives the monitor layout before its service runs"
rm -f "$B/monitor-layout"
settled >/dev/null

# A DispVM takes the firewall rules of the VM that asked for it.
qvm-create -q -s -l green dvt-src && qvm-firewall -P deny -a dvt-src 192.0.2.7 tcp 8080 &&
    qvm-firewall -a -e +3600 dvt-src 192.0.2.8 tcp 8081 2>/dev/null
at=$(qvm-firewall dvt-src | sed -n 's/.*(expires at \([0-9]*\)).*/\1/p')
(echo 'sleep 3' | qfile-daemon-dvm -q -t $T qubes.VMShell dvt-src DEFAULT) &
for i in $(seq 100); do [ "$(disp_records)" = 1 ] && break; sleep 0.05; done
d=$(qvm-ls --raw-list | grep '^disp' | head -n 1)
run qvm-firewall "$d"
like "$out" "policy: deny" "a DispVM asked for by a VM has that VM's firewall policy"
like "$out" "192.0.2.7 tcp 8080" "and its rules"
like "$out" "192.0.2.8 tcp 8081 (expires at $at)" "expiring ones too"
# Its qrexec daemon, which keeps them in force, is told when the first
# expires: it reads nothing to begin with.
for i in $(seq 100); do pgrep -f "qrexec-daemon .*-- $d\$" >/dev/null && break; sleep 0.05; done
like "$(pgrep -af "qrexec-daemon .*-- $d\$")" "--firewall-expiry $at -- $d" \
     "its qrexec daemon is told when that rule expires ($at)"
wait_jobs 120 "a DispVM asked for by a VM"
settled >/dev/null

# Isolation: a DispVM's writes are invisible to the next one.
out=$(echo 'echo mine > /rw/secret && echo mine > /etc/secret && sync && cat /rw/secret /etc/secret' |
      qfile-daemon-dvm -q -t $T qubes.VMShell dom0 DEFAULT 2>&1)
is "$out" "mine
mine" "a DispVM writes to its private disk and its root"
out=$(echo 'for f in /rw/secret /etc/secret; do [ -e $f ] && echo "$f seen"; done; ls /rw | grep -v lost+found; echo end' |
      qfile-daemon-dvm -q -t $T qubes.VMShell dom0 DEFAULT 2>&1)
is "$out" "end" "the next DispVM sees neither file (and reads its private disk fine)"

# Sixteen at once (WHAT says how: fresh or preloaded). Each service waits
# for the gate (a FIFO the test holds open) to close, so that all sixteen
# are seen running together however slow the restores are. Preloading is
# turned off while they run.
at_once() {
    what=$1 n=16
    rm -f "$SCRATCH/gate" "$SCRATCH"/c*.out "$SCRATCH"/c*.err "$SCRATCH"/c*.rc
    mkfifo "$SCRATCH/gate"
    for i in $(seq $n); do
        ({ echo "uname -n; cat /sys/class/net/eth0/address; ip -4 -o addr show eth0 | awk '{print \$4}'
                 ping -c 1 -W 3 10.138.$netid.1 >/dev/null && echo reached; read gate || true"
           cat "$SCRATCH/gate"; } |
         qfile-daemon-dvm -t $T qubes.VMShell dom0 DEFAULT > "$SCRATCH/c$i.out" 2> "$SCRATCH/c$i.err"
         echo $? > "$SCRATCH/c$i.rc") &
    done
    exec 3>"$SCRATCH/gate"
    # While they run: sixteen domains, each with its own UUID.
    for i in $(seq 1800); do [ "$(disp_domains)" = $n ] && break; sleep 0.1; done
    diag "$what: DispVM domains running together: $(disp_domains)"
    uuids=$(for d in $(virsh -c "$QUBES_VMM_URI" list --name); do
                case $d in disp*) [ -d "$R/vms/$d" ] && virsh -c "$QUBES_VMM_URI" domuuid "$d" ;; esac
            done | grep . | sort -u | wc -l)
    is "$uuids" "$n" "$what: $n DispVMs run at once, with $n distinct UUIDs"
    # No preload is made while they all run: none is replaced after them.
    qubes-prefs -s dispvm-preload 0
    exec 3>&-
    wait_jobs 300 "$what: sixteen at once"
    fails=0
    for i in $(seq $n); do [ "$(cat "$SCRATCH/c$i.rc")" = 0 ] || { fails=$((fails + 1)); diag "$(cat "$SCRATCH/c$i.err")"; }; done
    is "$fails" 0 "$what: $n concurrent requests all succeed"
    is "$(for i in $(seq $n); do sed -n 1p "$SCRATCH/c$i.out"; done | grep '^disp[0-9]*$' | sort -u | wc -l)" \
       "$n" "$what: with $n distinct names (disp<N>)"
    is "$(for i in $(seq $n); do sed -n 2,3p "$SCRATCH/c$i.out"; done | sort -u | wc -l)" \
       "$((2 * n))" "$what: with $n distinct MACs and $n distinct addresses"
    bad=0
    for i in $(seq $n); do
        d=$(sed -n 1p "$SCRATCH/c$i.out" | sed 's/^disp//')
        want=$(printf '00:16:3e:7c:8b:%02x\n10.138.%d.%d/24\nreached' "$d" "$netid" $((d % 254 + 1)))
        [ "$(sed -n 2,4p "$SCRATCH/c$i.out")" = "$want" ] || { bad=$((bad + 1)); diag "disp$d: $(sed -n 2,4p "$SCRATCH/c$i.out" | tr '\n' ' ')"; }
    done
    is "$bad" 0 "$what: each has the MAC and address of its dispid, and reaches its gateway over its network"
    preloaded=$(cat "$SCRATCH"/c*.err | grep -c "Using preloaded disp")
    is "$(settled)" "0/0/0" "$what: and leave nothing behind"
}
at_once fresh
is "$preloaded" 0 "fresh: none was preloaded"

# The caller goes away: the reader of the service's output exits.
t0=$(date +%s)
echo 'sleep 60' | qfile-daemon-dvm -q -t $T qubes.VMShell dom0 DEFAULT 2>/dev/null | (sleep 2; exit 0)
for i in $(seq 100); do [ "$(leftovers)" = "0/0/0" ] && break; sleep 0.1; done
is "$(settled)" "0/0/0" "when the caller goes away mid-service, the DispVM is destroyed and its record removed"
ok "$([ $(( $(date +%s) - t0 )) -lt 30 ]; echo $?)" "without waiting for the service to end"

# Killed: by SIGTERM or SIGKILL, the request goes and its worker still
# tears the DispVM down; when the worker itself is killed, qvm-cleanup-dispvms
# does.
(echo 'sleep 60' | qfile-daemon-dvm -q -t $T qubes.VMShell dom0 DEFAULT; echo $? > "$SCRATCH/term.rc") &
for i in $(seq 100); do [ "$(disp_records)" = 1 ] && break; sleep 0.05; done
sleep 1     # the service runs: the signal comes mid-session
t0=$(date +%s)
pkill -TERM -f "qfile-daemon-dvm -q -t $T"
wait_jobs 60 "SIGTERM mid-session"
ok "$([ $(( $(date +%s) - t0 )) -lt 5 ] && [ "$(cat "$SCRATCH/term.rc")" != 0 ]; echo $?)" \
   "SIGTERM mid-session: qfile-daemon-dvm ends at once, with a failure status ($(cat "$SCRATCH/term.rc"))"
is "$(settled)" "0/0/0" "SIGTERM to qfile-daemon-dvm: the DispVM is destroyed and its record removed"
(echo 'sleep 60' | qfile-daemon-dvm -q -t $T qubes.VMShell dom0 DEFAULT) &
for i in $(seq 100); do [ "$(disp_records)" = 1 ] && break; sleep 0.05; done
pkill -KILL -f "qfile-daemon-dvm -q -t $T"
wait_jobs 60 "SIGKILL to qfile-daemon-dvm"
is "$(settled)" "0/0/0" "SIGKILL to qfile-daemon-dvm: its worker still destroys the DispVM"
(echo 'sleep 60' | qfile-daemon-dvm -q -t $T qubes.VMShell dom0 DEFAULT) &
for i in $(seq 300); do d=$(qvm-ls --raw-list | grep '^disp' | head -n 1)
                        [ -n "$d" ] && [ -S "$R/vms/$d/qrexec.sock" ] && break; sleep 0.05; done
kill -KILL "$(cut -d' ' -f1 "$R/vms/$d/owner")"
sleep 1
is "$(disp_records)" "1" "SIGKILL to the DispVM's worker leaves its record behind"
run qvm-cleanup-dispvms
is "$rc" 0 "qvm-cleanup-dispvms runs"
like "$out" "Removed $d (the process that kept it is gone)" "and says what it removed, and why"
wait_jobs 120 "SIGKILL to the worker"
is "$(settled)" "0/0/0" "and nothing is left"

# A worker whose DispVM went cleanly waits for the next request: the next
# one (after --wait-teardown, which it answers once it said so) goes to it,
# gets a DispVM of its own, and nothing of the first request's reaches it:
# the first asked for timings, the second did not, and the first's stderr
# gets nothing more once it ended.
t0=$(date +%s)
echo 'uname -n' | qfile-daemon-dvm -q --timings --wait-teardown -t $T qubes.VMShell dom0 DEFAULT \
    2>&1 > "$SCRATCH/first.out" | cat > "$SCRATCH/first.err"
ok "$([ $(( $(date +%s) - t0 )) -lt 10 ]; echo $?)" \
   "a request's stderr (with its timings) is closed once it ended: the idle worker keeps none of it"
size=$(stat -c %s "$SCRATCH/first.err")
echo 'uname -n' | qfile-daemon-dvm -q --wait-teardown -t $T qubes.VMShell dom0 DEFAULT \
    > "$SCRATCH/second.out" 2> "$SCRATCH/second.err"
like "$(tail -n 2 "$R/dvmd.log")" "to a new DispVM (idle worker" "the second request goes to the first one's worker, idle"
ok "$([ -s "$SCRATCH/first.out" ] && [ -s "$SCRATCH/second.out" ] &&
      [ "$(cat "$SCRATCH/first.out")" != "$(cat "$SCRATCH/second.out")" ]; echo $?)" \
   "each got a DispVM of its own ($(cat "$SCRATCH/first.out"), $(cat "$SCRATCH/second.out"))"
like "$(cat "$SCRATCH/first.err")" "libvirt: domain created" "the first request's timings came, its backend's too"
# Its emulator's threads, read before the teardown ended it: "WALL CPU
# FAULTS" of the class named. Restored for the request, the emulator counts
# from its start: the main thread started QEMU and loaded the device
# state, the vCPU ran the guest.
# emu FILE CLASS N: field N (1 wall, 2 CPU, 3 faults) of that line.
emu() {
    sed -n "s/^timing:   emulator: $2 *\([0-9.]*\) ms wall *\([0-9.]*\) ms cpu *\([0-9]*\) faults.*/\1 \2 \3/p" "$1" |
        cut -d ' ' -f "$3"
}
ew=$(emu "$SCRATCH/first.err" 'main thread' 1)
ec=$(emu "$SCRATCH/first.err" 'main thread' 2)
ef=$(emu "$SCRATCH/first.err" 'main thread' 3)
vc=$(emu "$SCRATCH/first.err" 'vCPU threads' 2)
ok "$(awk -v w="$ew" -v c="$ec" -v f="$ef" -v vc="$vc" 'BEGIN { exit !(w > 0 && c > 0 && f > 100 && vc > 0) }'; echo $?)" \
   "and its emulator's: main thread ${ec:-?} ms CPU and ${ef:-?} faults, vCPU ${vc:-?} ms, over ${ew:-?} ms"
is "$(grep -c 'ms' "$SCRATCH/second.err")" "0" "the second, which asked for none, got none"
is "$(stat -c %s "$SCRATCH/first.err")" "$size" "nor did the first request's stderr, once it ended"
is "$(settled)" "0/0/0" "and nothing is left"
# Without --wait-teardown: a request made as soon as the last one's record
# is gone finds that worker idle too (it says so before the record goes).
for i in 1 2 3; do
    echo 'uname -n' | qfile-daemon-dvm -q -t $T qubes.VMShell dom0 DEFAULT > /dev/null
    for j in $(seq 500); do [ "$(disp_records)" = 0 ] && break; sleep 0.01; done
done
echo 'uname -n' | qfile-daemon-dvm -q --wait-teardown -t $T qubes.VMShell dom0 DEFAULT > /dev/null
is "$(tail -n 4 "$R/dvmd.log" | grep -c 'to a new DispVM (idle worker')" 4 \
   "requests made once the last one's record is gone go to its worker, idle"
is "$(settled)" "0/0/0" "and nothing is left"

# A stale savefile: the template's root image changed.
touch "$B/vm-templates/$T/root.img"
run sh -c "echo 'echo x' | qfile-daemon-dvm -q --no-regenerate -t $T qubes.VMShell dom0 DEFAULT"
like "$out" "changed since the savefile was made" \
     "a stale savefile is detected after the template's root image changes"
out=$(echo 'echo regenerated' | qfile-daemon-dvm -q -t $T qubes.VMShell dom0 DEFAULT)
is "$out" "regenerated" "and made again on the next request"
# The saved domain's NIC is on the dvm VM's network: another one is stale too.
qvm-prefs -s $T-dvm netvm none
run sh -c "echo 'echo x' | qfile-daemon-dvm -q --no-regenerate -t $T qubes.VMShell dom0 DEFAULT"
like "$out" "network of '$T-dvm' changed since the savefile was made" \
     "a savefile is stale when the dvm VM's network changed"
qvm-prefs -s $T-dvm netvm $N
out=$(echo 'echo same-net' | qfile-daemon-dvm -q --no-regenerate -t $T qubes.VMShell dom0 DEFAULT 2>&1)
is "$out" "same-net" "and usable again once the network is the one it was made on"

# Preloaded DispVMs: restored and paused ahead, taken by a request, replaced
# in the background; a broken one never stalls a request. A preload that
# waits is paused with its qrexec-daemon up (a DispVM being restored is
# paused too, for a moment, before its daemon is).
paused() { qvm-ls | awk -F'|' '{gsub(/ /, "", $1); gsub(/ /, "", $3)} $3 == "Paused" {print $1}'; }
parked() { for d in $(paused); do [ -S "$R/vms/$d/qrexec.sock" ] && echo "$d"; done; }
qubes-prefs -s dispvm-preload 1
run qvm-create-default-dvm $T
like "$out" "Preloaded disp" "with dispvm-preload 1, a DispVM is restored and paused ahead"
pre=$(qvm-ls --raw-list | grep '^disp')
is "$(qvm-ls | grep " $pre " | awk -F'|' '{gsub(/ /, "", $3); print $3}')" "Paused" "it waits paused"
is "$(grep -o "<QubesDisposableVm[^>]*name=\"$pre\"[^>]*>" "$B/qubes.xml" | grep -o 'internal="[A-Za-z]*"')" \
   'internal="True"' "and internal, nobody's VM yet"
# Ahead of anyone's request, below what requests need: the preload's
# emulator (all its threads) and worker run at nice 10 until claimed.
nices() { ps -L -o ni= -p "$1" | tr -d ' ' | sort -u | tr '\n' ' '; }
wk=$(grep "$pre is preloaded and waits" "$R/dvmd.log" | sed -n 's/.*(worker \([0-9]*\)).*/\1/p')
qp=$(cat "/run/libvirt/qemu/$pre.pid")
is "$(nices "$qp")/$(nices "$wk")" "10 /10 " "a preload's emulator and worker run at nice 10"
echo 'uname -n; sleep 1' | qfile-daemon-dvm --timings -t $T qubes.VMShell dom0 DEFAULT >"$SCRATCH/pre.out" \
    2>"$SCRATCH/pre.err" &
rq=$!
for i in $(seq 200); do [ -s "$SCRATCH/pre.out" ] && break; sleep 0.05; done
is "$(nices "$qp")/$(nices "$wk")" "0 /0 " "claimed, both run at nice 0 for the request"
wait $rq
out=$(cat "$SCRATCH/pre.out")
like "$(cat "$SCRATCH/pre.err")" "Using preloaded $pre" "a request takes the preloaded DispVM"
is "$out" "$pre" "and its service runs there"
for i in $(seq 600); do [ "$(disp_records)" = 1 ] && [ "$(parked | wc -l)" = 1 ] && break; sleep 0.05; done
next=$(qvm-ls --raw-list | grep '^disp')
ok "$([ -n "$next" ] && [ "$next" != "$pre" ]; echo $?)" "a replacement is preloaded in the background ($next)"
# A claimed preload's emulator (reported before its teardown, which came
# before the replacement) counts from the claim: the request's second
# of service, not the restore and warm-up before it (which alone cost a
# fresh DispVM's main thread more CPU than a request served by a preload).
pw=$(emu "$SCRATCH/pre.err" 'main thread' 1)
pc=$(emu "$SCRATCH/pre.err" 'main thread' 2)
qc=$(emu "$SCRATCH/pre.err" 'vCPU threads' 2)
ok "$(awk -v w="$pw" -v c="$pc" -v ec="$ec" -v qc="$qc" \
      'BEGIN { exit !(w >= 1000 && w < 10000 && c < ec && qc > 0) }'; echo $?)" \
   "its emulator's figures count from the claim: ${pw:-?} ms, main thread ${pc:-?} ms CPU (fresh: $ec), vCPU ${qc:-?} ms"
# Made by the claimed preload's worker once that DispVM was gone: no fork,
# and none of its ended processes kept.
like "$(grep "$next is preloaded" "$R/dvmd.log")" "(worker $wk)" "by the worker of the one claimed"
is "$(nices "$(cat "/run/libvirt/qemu/$next.pid")")/$(nices "$wk")" "10 /10 " \
   "which is back at nice 10, and so is the replacement's emulator"
is "$(ps --ppid "$wk" -o stat= | grep -c Z)" 0 "which keeps no ended process"
# A preload was restored before anyone asked: the request that claims it
# still gives it its own identity.
out=$(echo "uname -n; cat /sys/class/net/eth0/address; ip -4 -o addr show eth0 | awk '{print \$4}'" |
      QUBES_DISPVM_MIN_FREE_MIB=99999999 qfile-daemon-dvm -q -t $T qubes.VMShell dom0 DEFAULT 2>&1)
n=${next#disp}
is "$out" "$(printf '%s\n00:16:3e:7c:8b:%02x\n10.138.%d.%d/24' "$next" "$n" "$netid" $((n % 254 + 1)))" \
   "a claimed preload has the name, MAC and address of its own dispid"
for i in $(seq 600); do
    next=$(parked)
    [ -n "$next" ] && [ "$next" != "disp$n" ] && break
    sleep 0.05
done
# That request asked for more free memory than there is: the next preload
# (by the same worker) is made with the service's settings, not its.
wk=$(grep "disp$n is preloaded and waits" "$R/dvmd.log" | sed -n 's/.*(worker \([0-9]*\)).*/\1/p')
ok "$([ -n "$next" ] && grep -q "$next is preloaded and waits (worker $wk)" "$R/dvmd.log" &&
      ! grep -q 'preload of .* failed' "$R/dvmd.log"; echo $?)" \
   "the next preload ($next) has the service's settings, not the last request's"
pid=$(pgrep -f "guest=$next," | head -n 1)
kill -9 "$pid"
for i in $(seq 50); do [ "$(qvm-ls | grep " $next " | grep -c Paused)" = 0 ] && break; sleep 0.1; done
out=$(echo 'echo despite' | qfile-daemon-dvm -q -t $T qubes.VMShell dom0 DEFAULT)
is "$out" "despite" "a broken preload does not stall a request (it restores one instead)"
# A service that starts (at boot, its unit) fills the pool on its own: no
# request, no change of qubes.xml.
qubes-dvmd --stop
qubes-dvmd
for i in $(seq 600); do [ "$(parked | wc -l)" = 1 ] && break; sleep 0.05; done
is "$(parked | wc -l)" 1 "a service started with dispvm-preload 1 preloads with no request"
# One started with dispvm-preload 0 keeps no pool: raising it later fills
# the default template's, with no request and no qvm-create-default-dvm.
qubes-prefs -s dispvm-preload 0
qubes-dvmd --stop
qubes-dvmd
qubes-prefs -s dispvm-preload 1
for i in $(seq 600); do [ "$(parked | wc -l)" = 1 ] && break; sleep 0.05; done
is "$(parked | wc -l)" 1 "raising dispvm-preload on a running service preloads with no request"
# A replacement does not compete with the requests still being served: a
# claimed preload's worker holds its pool's next preload while another
# request runs, for a moment at most (a second).
echo 'uname -n; sleep 1' | qfile-daemon-dvm -q -t $T qubes.VMShell dom0 DEFAULT >"$SCRATCH/ha.out" 2>&1 &
ha=$!
for i in $(seq 200); do [ -s "$SCRATCH/ha.out" ] && break; sleep 0.05; done
a=$(head -n 1 "$SCRATCH/ha.out")
echo 'uname -n; sleep 10' | qfile-daemon-dvm -q -t $T qubes.VMShell dom0 DEFAULT >"$SCRATCH/hb.out" 2>&1 &
hb=$!
wait $ha
wk=$(grep "$a is preloaded and waits" "$R/dvmd.log" | tail -n 1 | sed -n 's/.*(worker \([0-9]*\)).*/\1/p')
for i in $(seq 100); do grep -q "waits while requests are served (worker $wk)" "$R/dvmd.log" && break; sleep 0.05; done
like "$(grep "worker $wk" "$R/dvmd.log" | tail -n 1)" "waits while requests are served" \
     "a claimed preload's replacement waits while another request is served ($a, worker $wk)"
for i in $(seq 180); do [ "$(parked | wc -l)" = 1 ] && break; sleep 0.05; done
ok "$(kill -0 $hb 2>/dev/null && [ "$(parked | wc -l)" = 1 ]; echo $?)" \
   "for a moment only: it is preloaded again before that request ends"
like "$(grep "worker $wk" "$R/dvmd.log" | grep -A1 'waits while requests are served' | tail -n 1)" \
     "(worker $wk, again)" "made then by the same worker"
wait $hb
is "$?/$(wc -l < "$SCRATCH/hb.out")" "0/1" "and the request it waited for ran to its end"
# Sixteen at once with four preloads waiting: four take them, twelve are
# restored; all as distinct as before.
qubes-prefs -s dispvm-preload 4
qvm-create-default-dvm -q $T
is "$(parked | wc -l)" 4 "with dispvm-preload 4, four preloads wait when qvm-create-default-dvm returns"
at_once "4 preloaded"
is "$preloaded" 4 "4 preloaded: four requests took a preload"
qubes-prefs -s dispvm-preload 0
for i in $(seq 100); do pgrep -f "qfile-daemon-dvm" >/dev/null || break; sleep 0.1; done
sleep 1
qvm-cleanup-dispvms -q
is "$(settled)" "0/0/0" "with preloading off, qvm-cleanup-dispvms removes the preloads"

# /dev/shm is everybody's: another user makes /dev/shm/qubes first, with a
# "savefile" of the same size as ours and newer. It is never read. (In a
# private mount namespace with a /dev/shm of its own; a full-image savefile,
# whose clone libvirt reads from the run directory, outside that /dev/shm.)
qubes-prefs -s dispvm-memory full
qvm-create-default-dvm -q $T
two_at_once "full memory"
size=$(stat -c %s "$B/dvmdata/$T-dvm.savefile")
if ! unshare -m --propagation private sh -c 'mount -t tmpfs tmpfs /dev/shm' 2>/dev/null; then
    ok 0 "# SKIP no private mount namespace here"
else
    # The DispVMs are made by the DispVM service: one that runs in there.
    qubes-dvmd --stop
    out=$(echo 'uname -n' | unshare -m --propagation private sh -c "
        mount -t tmpfs -o mode=1777 tmpfs /dev/shm &&
        setpriv --reuid=65534 --regid=65534 --clear-groups sh -c \
            'mkdir -m 0777 /dev/shm/qubes && head -c $size /dev/zero > /dev/shm/qubes/$T-dvm.savefile' &&
        qfile-daemon-dvm -t $T qubes.VMShell dom0 DEFAULT" 2>&1)
    qubes-dvmd --stop
    like "$out" "from $B/dvmdata/$T-dvm.savefile" \
         "with another user's /dev/shm/qubes, a DispVM is restored from the savefile in dvmdata"
    like "$out" "
disp" "and runs its service"
    is "$(settled)" "0/0/0" "and leaves nothing behind"
fi

# A full disk while saving a new savefile: the old one still works.
mkdir -p "$SCRATCH/dvmold" && cp -a "$B/dvmdata/." "$SCRATCH/dvmold/"
# Room for the old set and 200 KiB: less than a new savefile needs, with
# either memory path.
used=$(du -sk "$B/dvmdata" | cut -f1)
if mount -t tmpfs -o size=$((used + 200))k tmpfs "$B/dvmdata" 2>/dev/null; then
    cp -a "$SCRATCH/dvmold/." "$B/dvmdata/"
    run qvm-create-default-dvm -q $T
    like "$out" "No space left on device" "saving a new savefile on a full disk fails clearly"
    is "$(ls -A "$B/dvmdata" | grep -c '\.tmp$')" "0" "and leaves no temporary file"
    out=$(echo 'echo still-works' | qfile-daemon-dvm -q --no-regenerate -t $T qubes.VMShell dom0 DEFAULT)
    is "$out" "still-works" "the old savefile still works"
    is "$(settled)" "0/0/0" "nothing left behind"
else
    ok 1 "mounting a small tmpfs for the disk-full case"
fi
done_testing
