#!/bin/sh
# The original's habits of qvm-run, qvm-start, qvm-shutdown and qvm-ls, end
# to end on real guests: --no-auto starts nothing, -a starts; --localcmd
# connects the VM's command and a local command both ways at once; --all
# runs in every running VM but the excluded, output prefixed; qvm-ls -i, -n,
# -d, -k and -m on running VMs, against qvm-prefs, the files and the guest;
# qvm-shutdown --all --wait takes a VM down before its NetVM; qvm-start
# --debug keeps a child's root layer for one start; qvm-start --dvm
# prepares a savefile; qvm-start --autostart starts the VMs marked so,
# netvms first, and one refused does not keep the others back. Three guests: a template HVM, a NetVM and a child.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../e2e.sh"
T=hb-tpl-$$ N=hb-net-$$ C=hb-kid-$$
cleanup() {
    destroy_ours
    rm -rf "$SCRATCH"
}
trap cleanup EXIT
# Allocated MiB of a file or a directory (du -s), as qvm-ls -d counts.
alloc_mib() { echo $(($(du -s -B1 "$1" | cut -f1) / 1048576)); }
# near "N MiB" M: within 1 MiB (a running guest's files may grow meanwhile).
near() { n=${1% MiB}; [ "$n" -ge $(($2 - 1)) ] && [ "$n" -le $(($2 + 1)) ]; }
# in_order RE1 RE2: 0 when $out has a line matching RE1 before one matching RE2.
in_order() {
    first=$(printf '%s\n' "$out" | grep -n "$1" | head -n 1 | cut -d: -f1)
    second=$(printf '%s\n' "$out" | grep -n "$2" | head -n 1 | cut -d: -f1)
    [ -n "$first" ] && [ -n "$second" ] && [ "$first" -lt "$second" ]
    echo $?
}
# Domains of this run that exist.
ours_running() {
    for d in $(virsh -c "$QUBES_VMM_URI" list --name 2>/dev/null); do
        [ -d "$R/vms/$d" ] && echo "$d"
    done | sort | tr '\n' ' '
}

qvm-create -q -l red --hvm-template -r "$GUEST/root.img" --kernel "$GUEST/kernel" $T
qvm-create -q -l red --net -s -r "$GUEST/root.img" --kernel "$GUEST/kernel" $N
qvm-create -q -l blue -H -t $T $C && qvm-prefs -s $C netvm $N
netid=$(qvm-prefs -g $N netid) qid=$(qvm-prefs -g $C qid)

# --no-auto: a halted VM is an error naming it, and nothing starts (not
# even its netvm).
run qvm-run --no-auto -p $C true
is "$rc" 1 "qvm-run --no-auto of a halted VM fails"
like "$out" "'$C' is not running (Halted)" "naming the VM"
is "$(state $C)/$(state $N)/$(ours_running)" "Halted/Halted/" "and starts nothing, not even its netvm"

# -a (the default): it starts, its netvm first; -q says nothing meanwhile.
out=$(qvm-run -a -q -p $C 'uname -n' 2>"$SCRATCH/auto.err")
rc=$?
is "$rc/$out" "0/$C" "qvm-run -a starts a halted VM (its netvm first) and runs the command"
is "$(cat "$SCRATCH/auto.err")" "" "-q: no progress while it starts"
is "$(state $C)/$(state $N)" "Running/Running" "both run"
run qvm-run --no-auto -p $C 'echo up'
is "$rc/$out" "0/up" "--no-auto runs in a running VM"

# --localcmd: the VM command's input is the local command's output, its
# output the local command's input.
run timeout 60 qvm-run --localcmd "printf 'a\nb\n'; exec >&-; cat > $SCRATCH/lc1" $C 'wc -l'
is "$rc/$(cat "$SCRATCH/lc1" 2>/dev/null)" "0/2" \
   "a local printf piped into the VM's wc -l, its count into a local file"
run timeout 60 qvm-run --localcmd "cat > $SCRATCH/lc2" $C 'echo out; echo err >&2; exit 3'
is "$rc/$(cat "$SCRATCH/lc2" 2>/dev/null)" "3/out" \
   "the status is the VM command's; its output went to the local command"
like "$out" "err" "its error output is ours"
# Both ways at once, each side writing before it reads: the local
# command writes 1 MB before it reads, the VM's writes 300 KB while it
# reads. Two pipes would let both finish; so must qvm-run.
run timeout 120 qvm-run --localcmd "head -c 1000000 /dev/zero; exec >&-; wc -c > $SCRATCH/lc3" $C \
    'head -c 300000 /dev/zero & n=$(wc -c); wait; echo "vm read $n" >&2'
is "$rc/$(tr -d ' ' < "$SCRATCH/lc3" 2>/dev/null)" "0/300000" \
   "1 MB one way while 300 KB come the other: no deadlock, all of it arrives"
like "$out" "vm read 1000000" "and the VM's command read all of the 1 MB"
# A local command that ends first does not end the VM's.
run timeout 60 qvm-run --localcmd 'true' $C 'sleep 1; head -c 200000 /dev/zero; echo done > /tmp/lc-ran; exit 5'
is "$rc/$(qvm-run -p $C 'cat /tmp/lc-ran')" "5/done" \
   "a local command that ends at once: the VM's command still runs to its end, its status is returned"
run timeout 60 qvm-run --localcmd 'cat > /dev/null; exit 4' $C 'echo x'
is "$rc" 0 "a local command that fails does not change the status"
like "$out" "warning: the local command exited with status 4" "it is named"

# --all: every running VM but dom0, one after the other, by name.
expect=$(printf '%s: %s\n%s: %s' $C $C $N $N | sort)
is "$(qvm-run --all -p 'uname -n' | sort)" "$expect" "qvm-run --all -p runs in every running VM, each line prefixed"
is "$(qvm-run --all -p --exclude $N 'uname -n')" "$C: $C" "--exclude leaves a VM out"
is "$(qvm-run --all -p --exclude $N --exclude $C 'uname -n' 2>&1)" "qvm-run: no running VM but those left out to run the command in" \
   "--exclude any number of times"
is "$(qvm-run --all -p 'printf "e1\ne2" >&2' 2>&1 >/dev/null | sort | tr '\n' ' ')" \
   "$C: e1 $C: e2 $N: e1 $N: e2 " "error output prefixed too, a last line without newline ended"
run qvm-run --all -q "[ \$(uname -n) = $N ] && exit 4; exit 2"
is "$rc" 4 "the status is the highest of the VMs' statuses"
run qvm-run --all -q --exclude $N 'exit 0'
is "$rc" 0 "0 when every command succeeded"

# qvm-ls columns on running VMs, against qvm-prefs, the files and the guest.
run qvm-ls -i -n -d -k
is "$rc" 0 "qvm-ls -i -n -d -k lists running VMs"
is "$(lscol "$out" $C qid)/$(lscol "$out" $C xid)/$(lscol "$out" $N xid)" \
   "$qid/$(virsh -c "$QUBES_VMM_URI" domid $C)/$(virsh -c "$QUBES_VMM_URI" domid $N)" \
   "-i: qid, and xid, the domain's id on libvirt"
guest_ip=$(qvm-run -p $C "ip -4 -o addr show eth0 | awk '{print \$4}' | cut -d/ -f1; ip route | sed -n 's/^default via //p' | cut -d' ' -f1" | tr '\n' ' ')
is "$(lscol "$out" $C ip) $(lscol "$out" $C 'gateway/DNS') " "$guest_ip" \
   "-n: the address and gateway the guest has"
is "$(lscol "$out" $N 'ip back')" "10.137.$netid.1" "-n: the gateway its NetVM holds"
priv=$(qvm-prefs -g $C private_img) root=$(qvm-prefs -g $C root_img) vol=$(qvm-prefs -g $C volatile_img)
ok "$(near "$(lscol "$out" $C priv-curr)" "$(alloc_mib "$priv")" &&
      near "$(lscol "$out" $C vol-curr)" "$(alloc_mib "$vol")" &&
      near "$(lscol "$out" $C disk)" "$(alloc_mib "$(dirname "$priv")")"; echo $?)" \
   "-d: private image, root layer and directory as allocated ($(lscol "$out" $C priv-curr), $(lscol "$out" $C vol-curr), $(lscol "$out" $C disk))"
is "$(lscol "$out" $C root-max)/$(lscol "$out" $C priv-max)" \
   "$(($(stat -c %s "$root") / 1048576)) MiB/$(($(stat -c %s "$priv") / 1048576)) MiB" \
   "-d: the template's root image and the private image, by size"
is "$(lscol "$out" $N kernelopts)|$(lscol "$out" $C kernelopts)" \
   "$(kcell $N kernelopts)|$(kcell $C kernelopts)" "-k: kernelopts as qvm-prefs has them"
mem=$(qvm-ls -m)
is "$(printf '%s\n' "$mem" | awk -v vm=$C '$1 == vm {print $5}')/$(printf '%s\n' "$mem" | awk -v vm=$N '$1 == vm {print $5}')" \
   "$(qvm-prefs -g $C memory)/$(qvm-prefs -g $N memory)" "-m: each running guest's memory, its memory property"
ok "$(printf '%s\n' "$mem" | awk -v vm=$C '$1 == vm && $2 > 0 {f = 1} END {exit !f}'; echo $?)" \
   "-m: and its emulator's PSS"

# For the debug start below: a file on the child's root layer.
qvm-run -p $C 'echo kept > /etc/debug-mark; sync' >/dev/null

# qvm-shutdown --all --wait: the child first, then its NetVM (which would
# refuse while the child runs); nothing of ours runs after.
run qvm-shutdown --all --wait
is "$rc" 0 "qvm-shutdown --all --wait succeeds"
[ "$rc" = 0 ] || diag "$(printf '%s\n' "$out" | tail -n 5)"
ok "$(in_order "Shutting down $C\$" "Shutting down $N\$")" "the VM goes before the NetVM it uses"
is "$(state $C)/$(state $N)/$(ours_running)" "Halted/Halted/" "and nothing runs any more"

# qvm-start --debug: this start keeps the child's root layer; qubes.xml
# says what it said before.
run qvm-start --debug $C
is "$rc" 0 "qvm-start --debug starts the VM (its netvm first)"
like "$out" "logs in $B/appvms/$C/console.log" "and names its logs"
is "$(qvm-run -p $C 'cat /etc/debug-mark 2>/dev/null || echo gone')" "kept" \
   "its root layer of the last run is kept"
is "$(qvm-prefs -g $C debug)" "False" "its debug property is as it was"

# qvm-start --dvm T-dvm: the savefile of T, as qvm-create-default-dvm T.
run qvm-start --dvm $T-dvm
is "$rc" 0 "qvm-start --dvm TEMPLATE-dvm prepares the savefile"
[ "$rc" = 0 ] || diag "$(printf '%s\n' "$out" | tail -n 5)"
test -s "$B/dvmdata/$T-dvm.savefile"
ok $? "TEMPLATE's savefile is in dvmdata"

run qvm-shutdown --all -q
is "$rc/$(ours_running)" "0/" "qvm-shutdown --all leaves nothing running"
[ "$rc" = 0 ] || diag "$(printf '%s\n' "$out" | tail -n 5)"

# qvm-start --autostart, as the host's boot runs it: the marked VMs, the
# NetVM before the VM behind it although the name sorts it later.
qvm-prefs -s $C autostart True && qvm-prefs -s $N autostart True
run qvm-start --autostart
is "$rc" 0 "qvm-start --autostart succeeds"
[ "$rc" = 0 ] || diag "$(printf '%s\n' "$out" | tail -n 5)"
ok "$(in_order "Starting domain $N " "Starting domain $C ")" "the NetVM starts before the VM behind it"
like "$out" "--> 2 VMs started" "and it counts them"
is "$(state $C)/$(state $N)/$(state $T)" "Running/Running/Halted" "the marked VMs run, the unmarked template does not"
run qvm-start --autostart
is "$rc" 0 "again, with all of them running: nothing to do, status 0"
like "$out" "--> 0 VMs started" "and it says so"

# A template marked too cannot run beside its child: that one fails, named,
# status 1; the others start all the same.
qvm-shutdown --all --wait -q
qvm-prefs -s $T autostart True
run qvm-start --autostart
is "$rc" 1 "a marked VM that cannot start makes the status 1"
case $(state $T)/$(state $C) in
    Running/Halted) failed=$C ;;
    Halted/Running) failed=$T ;;
    *) failed="T: $(state $T), C: $(state $C)" ;;
esac
is "$(state $N)/$failed" "Running/$([ "$failed" = $T ] && echo $T || echo $C)" \
   "the NetVM runs, and of the template and its child the one started first"
like "$out" "1 of 3 autostart VMs did not start: '$failed': " "the other is named, with the reason"
run qvm-start --autostart web
is "$rc" 2 "--autostart takes no VM name"
run qvm-shutdown --all -q
is "$rc/$(ours_running)" "0/" "nothing of ours runs at the end"

done_testing
