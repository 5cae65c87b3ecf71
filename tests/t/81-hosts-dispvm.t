#!/bin/sh
# DispVMs on a second host (make host2-up: a libvirt daemon at
# qemu+tcp://127.0.0.2:16510/system, registered as h2): a local template's
# savefile prepared on h2 (qvm-create-default-dvm --host h2: an internal
# T-dvm-h2 VM on h2, its savefile and disk snapshots volumes of h2's pool,
# only small metadata here; a second run replaces the set); a service run
# in a fresh DispVM restored there (qfile-daemon-dvm --host h2): its output
# and status, its domain on h2 and not here, nothing left on either host;
# an unknown host and a missing savefile, named; placement of requests
# without --host over both hosts (8 at once, spread, distinct); h2 stopped
# while 8 requests run: each ends within a deadline, with its status or an
# error, and once h2 is back qvm-cleanup-dispvms leaves nothing anywhere;
# preloads kept per host; a template that lives on h2 (its DispVMs go
# there); the removal of a dvm VM on h2 taking its savefile set along.
# Needs root, `make vmm-up` and `make guest` (else skipped, as 80-hosts.t).
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../e2e.sh"
H2=qemu+tcp://127.0.0.2:16510/system
T=hdt$$
T2=hdr$$
D=$T-dvm-h2

# What was named disp* on h2 before this test (another run's leftovers) is
# not ours: neither counted nor touched.
before=$SCRATCH/h2.before
: > "$before"
h2_doms() { virsh -c $H2 list --name 2>/dev/null | grep '^disp' | grep -vxF -f "$before"; }
h2_vols() { virsh -c $H2 vol-list qubes 2>/dev/null | awk 'NR > 2 && NF {print $1}'; }
h2_disp_vols() { h2_vols | grep '^disp' | grep -vxF -f "$before"; }
# The volumes of $1 (a VM name) on h2, sorted, on one line.
vols() { h2_vols | awk -v p="$1." 'index($1, p) == 1' | LC_ALL=C sort | tr '\n' ' '; }
# Local leftovers (records/domains/run dirs), then h2's disp domains and volumes.
h2_leftovers() { echo "$(leftovers)/$(h2_doms | wc -l)/$(h2_disp_vols | wc -l)"; }
h2_settled() {
    for i in $(seq 150); do [ "$(h2_leftovers)" = "0/0/0/0/0" ] && break; sleep 0.2; done
    h2_leftovers
}
# Our DispVM domains running here (those with a run directory of ours).
local_doms() {
    for d in $(virsh -c "$QUBES_VMM_URI" list --name 2>/dev/null); do
        case $d in disp*) [ -d "$R/vms/$d" ] && echo "$d" ;; esac
    done
}

cleanup() {
    destroy_ours
    # h2 back if a check left it stopped, to remove what is ours there.
    virsh -c $H2 version >/dev/null 2>&1 || "$top/mk/host2-up.sh" >/dev/null 2>&1
    for d in $(h2_doms) $D; do virsh -c $H2 destroy "$d" >/dev/null 2>&1; done
    for v in $(h2_vols | awk -v t="$T" -v t2="$T2" 'index($1, t ".") == 1 || index($1, t "-dvm-h2.") == 1 ||
                                               index($1, t2 ".") == 1 || index($1, t2 "-dvm-h2.") == 1 || /^disp/' |
               grep -vxF -f "$before"); do
        virsh -c $H2 vol-delete --pool qubes "$v" >/dev/null 2>&1
    done
    rm -rf "$SCRATCH" "/dev/shm/qubes/$T-dvm."*
}
trap cleanup EXIT

run "$top/mk/host2-up.sh"
is "$rc" 0 "make host2-up starts the second daemon"
[ "$rc" = 0 ] || { printf '%s\n' "$out" | tail -n 10 | sed 's/^/#   /'; done_testing; exit 1; }
{ virsh -c $H2 list --name; h2_vols; } 2>/dev/null | grep '^disp' > "$before"
[ -s "$before" ] && diag "on h2 before this test (left alone): $(tr '\n' ' ' < "$before")"
run qvm-host add h2 $H2
is "$rc" 0 "qvm-host add h2 URI"
qvm-create -q -l red --hvm-template -r "$GUEST/root.img" --kernel "$GUEST/kernel" $T
is "$?/$(qvm-prefs -g $T host)" "0/local" "a template here"

# Refusals before any savefile is on h2.
run sh -c "echo 'echo x' | timeout 120 qfile-daemon-dvm -q --host nosuch -t $T qubes.VMShell dom0 DEFAULT"
is "$rc" 1 "qfile-daemon-dvm --host nosuch fails"
like "$out" "nosuch" "naming the host"
run sh -c "echo 'echo x' | timeout 120 qfile-daemon-dvm -q --no-regenerate --host h2 -t $T qubes.VMShell dom0 DEFAULT"
ok "$([ "$rc" != 0 ] && [ "$rc" != 124 ]; echo $?)" "--host h2 --no-regenerate without a savefile there fails (status $rc)"
like "$out" "qvm-create-default-dvm --host h2 $T" "saying how to make one"
is "$(h2_settled)" "0/0/0/0/0" "and leaves nothing on either host"

# The savefile on h2: an internal VM there, booted and saved there, its
# savefile and snapshots volumes of h2's pool of one generation.
t0=$(date +%s)
run timeout 600 qvm-create-default-dvm --host h2 $T
is "$rc" 0 "qvm-create-default-dvm --host h2 prepares a savefile on h2"
[ "$rc" = 0 ] || diag "$(printf '%s\n' "$out" | tail -n 5)"
diag "preparation on h2: $(( $(date +%s) - t0 )) s"
is "$(qvm-prefs -g $D host 2>&1)" "h2" "the internal VM $D lives on h2"
like "$(qvm-prefs -g $D internal 2>&1)" "True" "and is internal"
gen=$(vols $D | tr ' ' '\n' | sed -n "s/^$D\.savefile-\([0-9][0-9]*\)\$/\1/p")
diag "its volumes on h2: $(vols $D)"
ok "$([ -n "$gen" ] && [ "$(echo "$gen" | wc -l)" = 1 ]; echo $?)" "one savefile volume on h2: $D.savefile-${gen:-?}"
for v in root private; do
    like " $(vols $D)" " $D.$v-$gen.img " "its $v snapshot is a volume of the same generation"
done
is "$(virsh -c $H2 list --name | grep -cx $D)/$(virsh -c "$QUBES_VMM_URI" list --name | grep -cx $D)" "0/0" \
   "once saved, $D runs nowhere"
for f in meta header gen; do
    ok "$([ -f "$B/dvmdata/$D.$f" ]; echo $?)" "its $f is kept here in dvmdata"
done
big=$(find "$B" "$R" /dev/shm/qubes -name "*$D*" -size +1024k 2>/dev/null)
ok "$([ -z "$big" ] && [ ! -e "$B/dvmdata/$D.savefile" ]; echo $?)" "no savefile or image of it here ${big:+($big)}"

# A service in a DispVM restored on h2.
t0=$(date +%s%N)
out=$(echo 'echo hello; uname -n' | timeout 120 qfile-daemon-dvm -q --host h2 -t $T qubes.VMShell dom0 DEFAULT)
rc=$?
diag "a DispVM request on h2: $(( ($(date +%s%N) - t0) / 1000000 )) ms"
is "$rc" 0 "qfile-daemon-dvm --host h2 succeeds"
is "$(echo "$out" | head -n 1)" "hello" "the service's output comes back"
like "$(echo "$out" | tail -n 1)" "disp" "from a DispVM of its own ($(echo "$out" | tail -n 1))"
is "$(h2_settled)" "0/0/0/0/0" "no record, domain or volume is left on either host"
echo 'exit 5' | timeout 120 qfile-daemon-dvm -q --host h2 -t $T qubes.VMShell dom0 DEFAULT
is "$?" 5 "the service's exit status is returned"
h2_settled >/dev/null
# While it runs: on h2, not here.
(echo 'sleep 5; echo done' | timeout 120 qfile-daemon-dvm --host h2 -t $T qubes.VMShell dom0 DEFAULT \
     > "$SCRATCH/slow.out" 2> "$SCRATCH/slow.err") &
slow=$!
d=""
for i in $(seq 300); do d=$(h2_doms | head -n 1); [ -n "$d" ] && break; sleep 0.1; done
ok "$([ -n "$d" ]; echo $?)" "while the service runs, its DispVM runs on h2 (${d:-none})"
is "$(virsh -c "$QUBES_VMM_URI" list --name | grep -cx "${d:-none}")" 0 "and not here"
is "$(qvm-ls --raw-list | grep -cx "${d:-none}")" 1 "qvm-ls has its record"
diag "its volumes on h2: $(vols "${d:-none}")"
wait $slow
is "$(cat "$SCRATCH/slow.out")" "done" "the service finished"
like "$(cat "$SCRATCH/slow.err")" "on host h2" "the progress says where it was restored"
is "$(h2_settled)" "0/0/0/0/0" "and nothing is left on either host"

# A second preparation replaces the set: a new generation, the old gone.
run timeout 600 qvm-create-default-dvm -q --host h2 $T
gen2=$(vols $D | tr ' ' '\n' | sed -n "s/^$D\.savefile-\([0-9][0-9]*\)\$/\1/p")
ok "$([ "$rc" = 0 ] && [ -n "$gen2" ] && [ "$(echo "$gen2" | wc -l)" = 1 ] && [ "$gen2" != "$gen" ]; echo $?)" \
   "a second qvm-create-default-dvm --host h2: one savefile, a new generation ($gen -> ${gen2:-?})"
is "$(vols $D | tr ' ' '\n' | grep -c -e "-$gen\$" -e "-$gen\.")" 0 "the volumes of generation $gen are gone"
out=$(echo 'echo again' | timeout 120 qfile-daemon-dvm -q --host h2 -t $T qubes.VMShell dom0 DEFAULT 2>&1)
is "$out" "again" "a DispVM is restored from the new set"
is "$(h2_settled)" "0/0/0/0/0" "and leaves nothing"

# Placement: with a savefile here and on h2, requests without --host are
# spread over both (free memory minus the DispVMs placed there). Each
# service sleeps, so that its domain is seen running where it was placed.
t0=$(date +%s)
run timeout 600 qvm-create-default-dvm -q $T
is "$rc" 0 "qvm-create-default-dvm prepares a savefile here too"
diag "local preparation: $(( $(date +%s) - t0 )) s"
n=8
rm -f "$SCRATCH"/c*.out "$SCRATCH"/c*.err "$SCRATCH"/c*.rc "$SCRATCH"/seen.*
for i in $(seq $n); do
    (echo 'uname -n; sleep 4' | timeout 120 qfile-daemon-dvm -t $T qubes.VMShell dom0 DEFAULT \
         > "$SCRATCH/c$i.out" 2> "$SCRATCH/c$i.err"
     echo $? > "$SCRATCH/c$i.rc") &
done
for i in $(seq 1200); do
    h2_doms >> "$SCRATCH/seen.h2"
    local_doms >> "$SCRATCH/seen.local"
    [ "$(ls "$SCRATCH"/c*.rc 2>/dev/null | wc -l)" = $n ] && break
    sleep 0.1
done
wait_jobs 300 "DispVMs on two hosts"
fails=0
for i in $(seq $n); do
    [ "$(cat "$SCRATCH/c$i.rc")" = 0 ] || { fails=$((fails + 1)); diag "c$i: $(cat "$SCRATCH/c$i.rc"): $(tail -n 3 "$SCRATCH/c$i.err")"; }
done
is "$fails" 0 "$n concurrent requests without --host all succeed"
is "$(for i in $(seq $n); do sed -n 1p "$SCRATCH/c$i.out"; done | grep '^disp[0-9]*$' | sort -u | wc -l)" \
   "$n" "with $n distinct DispVM names"
on_h2=$(sort -u "$SCRATCH/seen.h2" | wc -l) here=$(sort -u "$SCRATCH/seen.local" | wc -l)
diag "seen running on h2: $(sort -u "$SCRATCH/seen.h2" | tr '\n' ' ')/ here: $(sort -u "$SCRATCH/seen.local" | tr '\n' ' ')"
ok "$([ "$on_h2" -ge 1 ] && [ "$here" -ge 1 ]; echo $?)" "spread over both hosts ($on_h2 on h2, $here here)"
said=$(for i in $(seq $n); do grep -q "on host h2" "$SCRATCH/c$i.err" && sed -n 1p "$SCRATCH/c$i.out"; done | sort -u | tr '\n' ' ')
is "$said" "$(sort -u "$SCRATCH/seen.h2" | tr '\n' ' ')" \
   "the progress of those restored on h2 says 'on host h2', of no other"
is "$(h2_settled)" "0/0/0/0/0" "and nothing is left on either host"

# h2 stopped while requests run there: each ends within the deadline,
# with the service's status or an error; h2 back, qvm-cleanup-dispvms
# leaves nothing behind.
rm -f "$SCRATCH"/c*.out "$SCRATCH"/c*.err "$SCRATCH"/c*.rc
t0=$(date +%s)
for i in $(seq $n); do
    (echo 'sleep 3; echo done' | timeout 120 qfile-daemon-dvm -t $T qubes.VMShell dom0 DEFAULT \
         > "$SCRATCH/c$i.out" 2> "$SCRATCH/c$i.err"
     echo $? > "$SCRATCH/c$i.rc") &
done
sleep 1
"$top/mk/host2-up.sh" stop >/dev/null 2>&1
ok "$(virsh -c $H2 version >/dev/null 2>&1; [ $? != 0 ]; echo $?)" "h2 stopped while they run"
wait_jobs 180 "DispVMs while h2 stops"
diag "all $n ended after $(( $(date +%s) - t0 )) s"
hung=0 unclear=0 good=0 failed=0
for i in $(seq $n); do
    r=$(cat "$SCRATCH/c$i.rc")
    case $r in
        0) if [ "$(cat "$SCRATCH/c$i.out")" = "done" ]; then good=$((good + 1))
           else unclear=$((unclear + 1)); diag "c$i: status 0, output: $(cat "$SCRATCH/c$i.out")"; fi ;;
        124) hung=$((hung + 1)) ;;
        *) failed=$((failed + 1))
           diag "c$i: status $r: $(grep -v '^-->' "$SCRATCH/c$i.err" | tail -n 2 | tr '\n' ' ')"
           grep -v '^-->' "$SCRATCH/c$i.err" | grep -qi -e error -e '^qfile-daemon-dvm: ' ||
               unclear=$((unclear + 1)) ;;
    esac
done
diag "with h2 stopped: $good done, $failed failed"
is "$hung" 0 "none of the $n requests hit the 120 s deadline"
is "$unclear" 0 "each ended with the service's output and status 0, or an error message"
ok "$([ "$good" -ge 1 ]; echo $?)" "those placed here ran to the end ($good)"
run "$top/mk/host2-up.sh"
is "$rc" 0 "host2-up starts h2 again"
# Workers still tearing down (h2 answering again) are left to end first.
for i in $(seq 150); do
    [ "$(h2_leftovers)" = "0/0/0/0/0" ] && break
    alive=0
    for f in "$R"/vms/disp*/owner; do
        [ -f "$f" ] && kill -0 "$(cut -d' ' -f1 "$f")" 2>/dev/null && alive=1
    done
    [ $alive = 0 ] && break
    sleep 0.2
done
diag "before qvm-cleanup-dispvms: $(h2_leftovers) (records/domains/run dirs here, domains/volumes on h2)"
run timeout 120 qvm-cleanup-dispvms
is "$rc" 0 "qvm-cleanup-dispvms runs"
[ -n "$out" ] && diag "$(printf '%s\n' "$out" | tail -n 10)"
is "$(h2_settled)" "0/0/0/0/0" "no disp record, domain or volume is left on either host"
out=$(echo 'uname -n' | timeout 120 qfile-daemon-dvm -q --host h2 -t $T qubes.VMShell dom0 DEFAULT 2>&1)
like "$out" "disp" "h2 back, a DispVM is restored there again"
is "$(h2_settled)" "0/0/0/0/0" "and leaves nothing"

# Preloads per host: with dispvm-preload 1, a preparation on h2 leaves a
# DispVM restored and paused there (h2's pool; none here), a request for h2
# takes it and a replacement comes there; a request for this host does not
# take it.
paused_h2() { virsh -c $H2 list --name --state-paused 2>/dev/null | grep '^disp' | grep -vxF -f "$before"; }
# The service keeps the default template's pool here whenever dispvm-preload
# is set: T is not the default template meanwhile, so that what is here
# comes from requests alone.
qubes-prefs -s default-template none
qubes-prefs -s dispvm-preload 1
run timeout 600 qvm-create-default-dvm --host h2 $T
is "$rc" 0 "with dispvm-preload 1, qvm-create-default-dvm --host h2"
like "$out" "Preloaded disp" "says a DispVM was preloaded"
pre=$(paused_h2)
ok "$([ -n "$pre" ] && [ "$(echo "$pre" | wc -l)" = 1 ]; echo $?)" "one waits paused on h2 (${pre:-none})"
is "$(local_doms | wc -l)" 0 "and none here"
out=$(echo 'uname -n' | timeout 120 qfile-daemon-dvm --host h2 -t $T qubes.VMShell dom0 DEFAULT 2>"$SCRATCH/pre.err")
like "$(cat "$SCRATCH/pre.err")" "Using preloaded $pre" "a request for h2 takes it"
is "$out" "$pre" "and its service runs there"
next=""
for i in $(seq 600); do
    next=$(paused_h2)
    [ -n "$next" ] && [ "$next" != "$pre" ] && [ -S "$R/vms/$next/qrexec.sock" ] && break
    sleep 0.1
done
ok "$([ -n "$next" ] && [ "$next" != "$pre" ]; echo $?)" "a replacement is preloaded on h2 (${next:-none})"
out=$(echo 'uname -n' | timeout 120 qfile-daemon-dvm --host local -t $T qubes.VMShell dom0 DEFAULT 2>"$SCRATCH/pre.err")
ok "$(case "$out" in disp*) [ "$out" != "$next" ];; *) false;; esac; echo $?)" \
   "a request for this host (--host local) gets a DispVM here, not h2's preload ($out)"
is "$(paused_h2)" "$next" "which still waits on h2"
qubes-prefs -s dispvm-preload 0
for i in $(seq 100); do pgrep -f "qfile-daemon-dvm" >/dev/null || break; sleep 0.1; done
sleep 1
qvm-cleanup-dispvms -q
is "$(h2_settled)" "0/0/0/0/0" "with preloading off, the preloads go from both hosts"
qubes-prefs -s default-template $T

# A template that lives on h2: its savefile is made there from its own
# volumes (no copy from here), and its DispVMs go there without --host.
qvm-create -q -l red --hvm-template --host h2 -r "$GUEST/root.img" --kernel "$GUEST/kernel" $T2
is "$?/$(qvm-prefs -g $T2 host)" "0/h2" "a template on h2"
run timeout 600 qvm-create-default-dvm --host h2 $T2
is "$rc" 0 "qvm-create-default-dvm --host h2 of a template on h2"
[ "$rc" = 0 ] || diag "$(printf '%s\n' "$out" | tail -n 5)"
is "$(printf '%s\n' "$out" | grep -c 'Sending the root image')" 0 "its root image is not sent: it is there"
run sh -c "echo 'uname -n' | timeout 120 qfile-daemon-dvm -t $T2 qubes.VMShell dom0 DEFAULT"
like "$rc/$out" "0/" "a request for it without --host succeeds"
like "$out" "on host h2" "restored on h2, where its template lives"
run sh -c "echo 'uname -n' | timeout 120 qfile-daemon-dvm -q --host local -t $T2 qubes.VMShell dom0 DEFAULT"
like "$rc/$out" "1/qfile-daemon-dvm: error: '$T2' lives on host 'h2'" "one for this host is refused, naming where it lives"
is "$(h2_settled)" "0/0/0/0/0" "and nothing is left"
run qvm-remove $T2-dvm-h2
is "$rc" 0 "its dvm VM goes"
run qvm-remove $T2
is "$rc/$(vols $T2)" "0/" "then the template, its volumes on h2 too"

# The set on h2 goes with its VM: its volumes there (savefile and snapshots
# of every generation), its header, generation and stamp here.
run qvm-remove $D
is "$rc" 0 "qvm-remove $D"
is "$(vols $D)" "" "its volumes on h2 are gone, its savefile set's too"
is "$(ls "$B/dvmdata" | grep -c "^$D\.")" 0 "and its files in dvmdata"
run sh -c "echo 'echo x' | timeout 120 qfile-daemon-dvm -q --no-regenerate --host h2 -t $T qubes.VMShell dom0 DEFAULT"
like "$rc/$out" "1/qfile-daemon-dvm: error: " "a request for h2 then fails"
like "$out" "no savefile of '$T' on host 'h2'" "saying there is no savefile there"
done_testing
