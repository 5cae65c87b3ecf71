#!/bin/sh
# qrexec end to end on real guests: many sessions at once per VM through
# its qrexec-daemon, end of file and exit status, megabytes both ways;
# calls a VM makes (qrexec-client-vm) to another VM, to dom0 and to
# $dispvm, decided by the policy; qvm-open-in-dvm's round trip; a DispVM
# that powers off mid-call. Needs root, `make vmm-up` and `make guest`.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../e2e.sh"
T=qx-tpl-$$ A=qx-a-$$ V=qx-b-$$
cleanup() {
    destroy_ours
    rm -rf "$SCRATCH" "/dev/shm/qubes/$T-dvm."*
}
trap cleanup EXIT
ms() { date +%s%3N; }

# The policy and dom0's services: the daemons read them from the
# environment they inherit from the tool that started their VM.
export QUBES_RPC_POLICY_DIR=$SCRATCH/policy QUBES_RPC_DIR=$SCRATCH/rpc
mkdir -p "$QUBES_RPC_POLICY_DIR" "$QUBES_RPC_DIR"
printf '#!/bin/sh\necho ran > %s/dom0-ran\necho dom0 service for $QREXEC_REMOTE_DOMAIN\n' \
    "$SCRATCH" > "$QUBES_RPC_DIR/qubes.VMShell"
chmod 755 "$QUBES_RPC_DIR/qubes.VMShell"
policy() { printf '%s\n' "$2" > "$QUBES_RPC_POLICY_DIR/$1"; }

qvm-create -q -l red --hvm-template -r "$GUEST/root.img" --kernel "$GUEST/kernel" $T
qvm-create -q -l blue -H -t $T $A
qvm-create -q -l green -H -t $T $V
qubes-prefs -s default-template $T
run qvm-create-default-dvm $T
is "$rc" 0 "the DispVM savefile of the template is made"
[ "$rc" = 0 ] || diag "$(echo "$out" | tail -n 3)"

run qvm-start -q $A
is "$rc" 0 "$A starts"
test -S "$R/vms/$A/qrexec.sock" && flock -n "$R/vms/$A/qrexec.lock" true
is "$?" 1 "its qrexec-daemon listens and holds the VM's qrexec lock"

# ---- dom0's sessions: many at once, each its own ----
t0=$(ms)
for i in 1 2 3 4 5 6 7 8; do
    (qvm-run -p $A "sleep 2; echo out $i; exit $i" > "$SCRATCH/c$i" 2>&1; echo $? > "$SCRATCH/s$i") &
done
wait_jobs 60 "eight sessions at once"
took=$(($(ms) - t0))
right=0
for i in 1 2 3 4 5 6 7 8; do
    [ "$(cat "$SCRATCH/c$i")" = "out $i" ] && [ "$(cat "$SCRATCH/s$i")" = $i ] && right=$((right + 1))
done
is $right 8 "8 concurrent qvm-run -p: each its own output and exit status"
ok "$([ $took -lt 4000 ]; echo $?)" "and all 8 of 'sleep 2' took under 4 s together ($took ms)"

head -c 10240 /dev/urandom > "$SCRATCH/10k"
qvm-run -p $A 'cat; echo "[eof]"' < "$SCRATCH/10k" > "$SCRATCH/10k.back"
is "$(head -c 10240 "$SCRATCH/10k.back" | cmp - "$SCRATCH/10k" && tail -c 6 "$SCRATCH/10k.back")" "[eof]" \
   "10 KiB through cat and back, then end of file reaches the service"
mkfifo "$SCRATCH/held"
sleep 30 > "$SCRATCH/held" &
holder=$!
t0=$(ms)
out=$(qvm-run -p $A 'echo ended' < "$SCRATCH/held")
took=$(($(ms) - t0))
kill $holder
is "$out/$((took < 10000))" "ended/1" "a service that ends closes the caller's output, its input still open ($took ms)"
qvm-run -p $A 'exit 3'
is "$?" 3 "exit 3 gives 3"
head -c 10485760 /dev/urandom > "$SCRATCH/10m"
t0=$(ms)
qvm-run -p $A cat < "$SCRATCH/10m" > "$SCRATCH/10m.back"
took=$(($(ms) - t0))
cmp -s "$SCRATCH/10m" "$SCRATCH/10m.back"
ok $? "10 MiB both ways at once through cat: no deadlock, the same bytes back ($took ms)"
# A reader that does not read stalls only its own session.
qvm-run -p $A 'yes' | (sleep 8; head -c 10 >/dev/null) &
stalled=$!
sleep 1
t0=$(ms)
is "$(qvm-run -p $A 'echo beside')" "beside" "a session whose reader does not read stalls no other"
ok "$([ $(($(ms) - t0)) -lt 5000 ]; echo $?)" "(the other answered in $(($(ms) - t0)) ms)"
wait $stalled 2>/dev/null

# ---- calls from a VM ----
qvm-start -q $V
policy qubes.VMShell "$A $V allow"
out=$(qvm-run -p $A "echo 'echo in-\$(hostname) for \$QREXEC_REMOTE_DOMAIN' | qrexec-client-vm $V qubes.VMShell; echo rc=\$?")
is "$out" "in-$V for $A
rc=0" "$A -> $V qubes.VMShell with '$A $V allow' runs in $V, with $A as the caller"
like "$(cat "$R/qrexec-policy.log")" "source=$A target=$V service=qubes.VMShell action=allow" \
     "the decision is in the policy log"
policy qubes.VMShell "$V $A allow"
out=$(qvm-run -p $A "echo 'touch /tmp/ran' | qrexec-client-vm $V qubes.VMShell; echo rc=\$?")
is "$out" "rc=126" "with no matching line the call is refused: qrexec-client-vm exits 126"
is "$(qvm-run -p $V 'test -e /tmp/ran && echo ran || echo nothing')" "nothing" "and nothing ran in $V"
like "$(tail -n 1 "$R/qrexec-policy.log")" "source=$A target=$V service=qubes.VMShell action=deny" \
     "the refusal is logged"
policy qubes.VMShell '$anyvm $anyvm allow'
out=$(qvm-run -p $A "echo x | qrexec-client-vm dom0 qubes.VMShell; echo rc=\$?")
is "$out/$(test -e "$SCRATCH/dom0-ran" && echo ran)" "rc=126/" "'\$anyvm \$anyvm allow' does not let $A reach dom0"
policy qubes.VMShell "$A dom0 allow"
out=$(qvm-run -p $A "qrexec-client-vm dom0 qubes.VMShell </dev/null; echo rc=\$?")
is "$out" "dom0 service for $A
rc=0" "a line naming dom0 does (dom0's own service, told who asks)"
run qvm-run -p $A "qrexec-client-vm ../$V qubes.VMShell </dev/null"
is "$rc" 2 "qrexec-client-vm refuses a target with '/' before asking"
policy qubes.VMShell "$A nosuchvm allow"
out=$(qvm-run -p $A "qrexec-client-vm nosuchvm qubes.VMShell </dev/null; echo rc=\$?")
is "$out" "rc=126" "a call to a VM that does not exist is refused"

# ---- $dispvm ----
policy qubes.VMShell '$anyvm $dispvm allow'
out=$(qvm-run -p $A "echo 'hostname; echo for \$QREXEC_REMOTE_DOMAIN' | qrexec-client-vm '\$dispvm' qubes.VMShell")
like "$out" "disp" "$A -> \$dispvm qubes.VMShell runs in a fresh DispVM ($(echo $out))"
like "$out" "for $A" "which is told that $A asked"
is "$(settled)" "0/0/0" "and is gone afterwards"
out=$(qvm-run -p $A "for i in 1 2 3 4; do (echo 'hostname; sleep 3' | qrexec-client-vm '\$dispvm' qubes.VMShell > /tmp/d\$i) & done; wait; cat /tmp/d1 /tmp/d2 /tmp/d3 /tmp/d4")
is "$(echo "$out" | grep '^disp' | sort -u | wc -l)" 4 "4 calls at once get 4 DispVMs ($(echo $out))"
is "$(settled)" "0/0/0" "all gone afterwards"

policy qubes.OpenInVM '$anyvm $dispvm allow'
out=$(qvm-run -p $A 'mkdir -p /home/user; printf "old text\n" > /home/user/doc.txt
                     qvm-open-in-dvm /home/user/doc.txt; echo rc=$?; cat /home/user/doc.txt')
is "$(echo "$out" | head -n 2)" "rc=0
old text" "qvm-open-in-dvm: the file keeps its old text"
like "$(echo "$out" | sed -n 3p)" "edited in disp" "and gains the line the DispVM's opener added ($(echo "$out" | sed -n 3p))"
is "$(settled)" "0/0/0" "the DispVM is gone afterwards"

out=$(qvm-run -p $A "echo 'poweroff -f' | qrexec-client-vm '\$dispvm' qubes.VMShell; echo rc=\$?")
ok "$([ "$out" != "rc=0" ]; echo $?)" "a DispVM that powers itself off mid-service ends the call ($out)"
is "$(settled)" "0/0/0" "and leaves no record, domain or run directory"

qvm-shutdown -q $A
qvm-shutdown -q $V
for i in $(seq 50); do [ -e "$R/vms/$A/qrexec.sock" ] || break; sleep 0.1; done
ok "$([ ! -e "$R/vms/$A/qrexec.sock" ]; echo $?)" "the VM's daemon ends with the VM and removes its socket"
done_testing
