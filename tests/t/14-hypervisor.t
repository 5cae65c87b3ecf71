#!/bin/sh
# The hypervisor is contacted lazily: tools that only use the database never
# connect; offline mode never connects; libvirt states reach qvm-ls.
. "$(dirname "$0")/../lib.sh"

sock=$SCRATCH/watch.sock
"$HELPERS/sockwatch" "$sock" > "$SCRATCH/watch.out" &
watch=$!
for i in $(seq 100); do grep -q listening "$SCRATCH/watch.out" 2>/dev/null && break; sleep 0.05; done
export QUBES_VMM_URI="qemu+unix:///system?socket=$sock"

fails=0
step() { "$@" > "$SCRATCH/step.out" 2>&1 || { fails=$((fails + 1)); diag "failed: $* -> $(cat "$SCRATCH/step.out")"; }; }
step qvm-create -l red --net -s net1
step qvm-create -l green --proxy -s fw1
step qvm-create -l black --hvm-template tpl
step qvm-create -l blue -H -t tpl work
step qvm-prefs -l work
step qvm-prefs -g work memory
step qvm-prefs -s work memory 600
step qvm-prefs -s work label orange
step qvm-prefs -s work netvm none
step qubes-prefs -l
step qubes-prefs -s default-netvm fw1
step qvm-ls --raw-list
is "$fails" 0 "database tools work with a hypervisor address that answers nobody"
kill -TERM $watch; wait $watch
is "$(tail -n 1 "$SCRATCH/watch.out")" "0" \
   "create, prefs -l/-g/-s, qubes-prefs and qvm-ls --raw-list never connect to the hypervisor"

# Controls: the same watcher sees the tools that do need the hypervisor.
"$HELPERS/sockwatch" "$sock" > "$SCRATCH/watch.out" &
watch=$!
for i in $(seq 100); do grep -q listening "$SCRATCH/watch.out" 2>/dev/null && break; sleep 0.05; done
run qvm-ls
like "$out" "warning: power states unknown" "qvm-ls warns when the hypervisor does not answer"
like "$(echo "$out" | grep ' work ')" "NA" "and shows the state as NA"
run qvm-remove work
like "$out" "cannot tell whether 'work' is running" "qvm-remove will not remove a VM it cannot check"
test -d "$QUBES_BASE_DIR/appvms/work"
ok $? "and keeps it"
kill -TERM $watch; wait $watch
ok "$([ "$(tail -n 1 "$SCRATCH/watch.out")" -ge 2 ]; echo $?)" \
   "control: the watcher counts those connections ($(tail -n 1 "$SCRATCH/watch.out"))"

# Offline mode, by option and by environment: no connection, all Halted.
"$HELPERS/sockwatch" "$sock" > "$SCRATCH/watch.out" &
watch=$!
for i in $(seq 100); do grep -q listening "$SCRATCH/watch.out" 2>/dev/null && break; sleep 0.05; done
run qvm-ls --offline-mode
like "$(echo "$out" | grep ' work ')" "Halted" "--offline-mode: every VM reads as Halted"
QUBES_OFFLINE=1 qvm-ls > "$SCRATCH/off.out" 2>&1
like "$(grep ' work ' "$SCRATCH/off.out")" "Halted" "QUBES_OFFLINE=1 does the same"
QUBES_OFFLINE=1 qvm-remove --just-db work > /dev/null 2>&1
ok $? "offline, qvm-remove treats the VM as halted"
kill -TERM $watch; wait $watch
is "$(tail -n 1 "$SCRATCH/watch.out")" "0" "offline mode never connects"

# Real states from libvirt's test driver (it has a running domain "test").
export QUBES_VMM_URI=test:///default
QUBES_OFFLINE=1 qvm-create -q -l red -H test
run qvm-ls
like "$(echo "$out" | grep ' test ')" "Transient" \
     "qvm-ls shows a running domain whose agent never answered as Transient"
like "$(echo "$out" | grep ' \[tpl\] ')" "Halted" "a VM without a domain is Halted"
run qvm-remove test
like "$out" "Cannot remove 'test': the VM is Transient" "a running VM cannot be removed"
run qvm-prefs -s test name other
like "$out" "Cannot change the name of a running VM" "a running VM cannot be renamed"

# The backend's own contract, through the library.
run "$UNIT/test_vmm"
is "$rc" 0 "backend unit test"
echo "$out" | sed 's/^/# /'

done_testing
