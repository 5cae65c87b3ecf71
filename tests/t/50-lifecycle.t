#!/bin/sh
# End to end on the real libvirt daemon and real QEMU guests (TCG): template
# HVMs and their children, the exclusion, copy-on-write roots, commands run
# through the agent, killing. Needs root, `make vmm-up` and `make guest`.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../e2e.sh"
# Domain names are host-wide: these are this run's own.
T=e2e-tpl-$$ C=e2e-child-$$ D=e2e-other-$$
cleanup() {
    for vm in $T $C $D e2e-net-$$; do virsh -c "$QUBES_VMM_URI" destroy "$vm" >/dev/null 2>&1; done
    rm -rf "$SCRATCH"
}
trap cleanup EXIT

run qvm-create -l red --hvm-template -r "$GUEST/root.img" --kernel "$GUEST/kernel" $T
is "$rc" 0 "qvm-create makes a template HVM from the test guest"
run qvm-create -l blue -H -t $T $C
is "$rc" 0 "and a child based on it"
qvm-create -q -l green -H -t $T $D

run qvm-start -q $T
is "$rc" 0 "the template HVM boots and its agent answers"
is "$(state $T)" "Running" "qvm-ls shows it Running"
out=$(qvm-run -p $T 'echo out-$(uname -n); echo err >&2; exit 7' 2>/dev/null)
rc=$?
is "$out" "out-$T" "qvm-run -p returns the command's output (from the guest, by its hostname)"
is "$rc" 7 "and its exit status"
is "$(echo 'piped input' | qvm-run -p $T 'cat')" "piped input" "qvm-run -p passes our input"
is "$(echo 'echo svc-$(uname -n) from $QREXEC_REMOTE_DOMAIN' | qvm-run -p --service qubes.VMShell $T)" \
   "svc-$T from dom0" "qvm-run --service runs the guest's qubes.VMShell with our input as its script"
run qvm-run -p --service ../../bin/sh $T
like "$out" "bad service name" "a service name cannot leave /etc/qubes-rpc"
qvm-run -p $T 'echo from-template-1 > /etc/tpl-mark' >/dev/null
# A running VM whose qrexec-daemon answers gets the command from the daemon
# alone: no hypervisor is asked, its backend is not even loaded.
nobackend="$SCRATCH/no-backends"
is "$(QUBES_VMM_PLUGIN_DIR=$nobackend qvm-run -p $T 'echo fast-$(uname -n)')" "fast-$T" \
   "qvm-run on a running VM needs no hypervisor backend (its qrexec-daemon answers)"
if command -v strace >/dev/null; then
    ASAN_OPTIONS=detect_leaks=0 strace -f -e trace=openat -o "$SCRATCH/run.strace" qvm-run -q -p $T true
    libs=$(grep -o 'libvirt[^"/]*\.so[^"]*' "$SCRATCH/run.strace" | sort -u | tr '\n' ' ')
    is "$libs" "" "and opens no libvirt library (strace)"
else
    ok 0 "and opens no libvirt library # SKIP no strace"
fi
run qvm-run --offline-mode -p $T true
like "$out" "cannot run anything in '$T': VMM operations disabled in offline mode" \
     "qvm-run --offline-mode refuses a running VM too"
is "$(state $T)" "Running" "and leaves it as it was (an offline start attempt used to forget its agent)"
run qvm-run -p no-such-vm true
like "$out" "no-such-vm" "qvm-run of an unknown VM is an error naming it"

run qvm-start $C
like "$out" "Cannot start the HVM while its template is running" "a child cannot start while its template runs"
run qvm-remove $T
like "$out" "Cannot remove" "a running template cannot be removed"

run qvm-shutdown -q $T
is "$rc" 0 "qvm-shutdown stops the template gracefully"
is "$(state $T)" "Halted" "it is Halted"

# The child is on a network: its NetVM, a guest, holds the gateway.
N=e2e-net-$$
qvm-create -q -n -s -r "$GUEST/root.img" -k "$GUEST/kernel" -l red $N && qvm-prefs -s $C netvm $N
netid=$(qvm-prefs -g $N netid) qid=$(qvm-prefs -g $C qid)
run qvm-start $C
like "$out" "Starting $N, the netvm of $C, first" "starting a VM starts its netvm first"
is "$(state $N)" "Running" "which runs"

is "$(qvm-run -p $C 'cat /etc/tpl-mark')" "from-template-1" "the child sees the template's root files"
is "$(qvm-run -p $C "cat /sys/class/net/eth0/address; ip -4 -o addr show eth0 | awk '{print \$4}'
                     ping -c 1 -W 3 10.137.$netid.1 >/dev/null && echo reached")" \
   "$(printf '00:16:3e:5e:6c:%02x\n10.137.%d.%d/24\nreached' $qid $netid $((qid + 2)))" \
   "a VM with a netvm has its MAC and address and reaches its gateway"
# QEMU is not root: libvirt gives it the VM's files for the run (DAC
# labelling) through directories only QEMU's group may enter.
is "$(qemu_user $C)" "libvirt-qemu sandbox" "the VM's QEMU runs as libvirt-qemu, in QEMU's seccomp sandbox"
devs=$(qemu_devices $C)
ok "$(no_usb "$devs"; echo $?)" "its QEMU emulates no USB controller ($devs)"
is "$(stat -c '%U:%G %a' "$B/appvms" "$B/appvms/$C" "$R/vms/$C" | tr '\n' ' ')" \
   "root:libvirt-qemu 750 root:libvirt-qemu 750 root:libvirt-qemu 750 " \
   "its directories are root's, open to QEMU's group only (mode 750)"
is "$(stat -c '%U %a' "$B/appvms/$C/volatile.img" "$B/appvms/$C/private.img" | tr '\n' ' ')" \
   "libvirt-qemu 600 libvirt-qemu 660 " "its images are QEMU's user's while it runs, and nobody else's"
# Its template's root under its layer: named in its domain XML (no header
# decides it), root's, read by QEMU's group and written by no QEMU.
is "$(stat -c '%U:%G %a' "$B/vm-templates/$T/root.img")" "root:libvirt-qemu 640" \
   "its template's root.img stays root's while it runs, read-only to QEMU (mode 640)"
ok "$(setpriv --reuid=libvirt-qemu --regid=libvirt-qemu --init-groups \
      sh -c "[ -r '$B/vm-templates/$T/root.img' ] && [ ! -w '$B/vm-templates/$T/root.img' ]"; echo $?)" \
   "QEMU's user may read it but not write it"
# A directory QEMU's user may not enter is named before libvirt is asked.
chmod 0700 "$SCRATCH"
run qvm-start -q $D
chmod 0711 "$SCRATCH"
like "$out" "QEMU runs as libvirt-qemu, which may not enter $SCRATCH (mode 700, root:root)" \
     "a VM under a directory QEMU cannot enter is refused, naming it"
is "$(state $D)" "Halted" "and does not start"
# A guest that floods its serial console fills at most two files of 1 MiB
# (virtlogd's max_size and max_backups, as make vmm-up sets them).
qvm-run -p $C 'head -c 2600000 /dev/zero | tr "\0" x > /dev/ttyS0' >/dev/null
sizes=$(stat -c %s "$B/appvms/$C/console.log" "$B/appvms/$C/console.log.0" 2>/dev/null | tr '\n' ' ')
set -- $sizes
ok "$([ $# = 2 ] && [ "$1" -le 1048576 ] && [ "$2" -le 1048576 ] && [ ! -e "$B/appvms/$C/console.log.1" ]; echo $?)" \
   "2.6 MB written to its serial console leave a log of at most 2 x 1 MiB (sizes: $sizes)"
run qvm-start $T
like "$out" "Cannot start HVM template while VMs based on it are running" \
     "the template cannot start while a child runs"
run qvm-remove $C
like "$out" "Cannot remove '$C': the VM is Running" "a running VM cannot be removed"
run qvm-grow-root $T 200M
like "$out" "Cannot resize the root image of template '$T' while VMs based on it are running" \
     "a template's root cannot be resized while a child runs"
qvm-run -p $C 'echo root-write > /etc/child-root; echo priv-write > /rw/child-priv; sync' >/dev/null
qvm-shutdown -q $C
qvm-start -q $C
is "$(qvm-run -p $C 'cat /etc/child-root 2>/dev/null || echo gone')" "gone" \
   "a file the child wrote to its root is gone after its next start"
is "$(qvm-run -p $C 'cat /rw/child-priv')" "priv-write" "a file on its private disk survives"
qvm-shutdown -q $C

qvm-start -q $T
qvm-run -p $T 'echo from-template-2 > /etc/tpl-mark; sync' >/dev/null
qvm-shutdown -q $T
qvm-start -q $C
is "$(qvm-run -p $C 'cat /etc/tpl-mark')" "from-template-2" \
   "a change to the template's root shows at the child's next start"

# Debug mode keeps the child's root layer across starts.
qvm-kill $C
qvm-prefs -s $C debug True
qvm-start -q $C
qvm-run -p $C 'echo kept-in-debug > /etc/debug-mark; sync' >/dev/null
qvm-shutdown -q $C
qvm-start -q $C
is "$(qvm-run -p $C 'cat /etc/debug-mark 2>/dev/null || echo gone')" "kept-in-debug" \
   "in debug mode the child's root writes survive a restart"
qvm-prefs -s $C debug False

run qvm-pause $C
is "$rc/$(state $C)" "0/Paused" "qvm-pause pauses a running VM"
run qvm-pause $C
like "$out" "VM already paused" "pausing it again says so"
# Its qrexec-daemon still answers, its guest would not: the pause is marked
# and qvm-run asks the hypervisor, which says Paused.
run timeout 60 qvm-run -p $C 'echo asleep'
is "$rc" 1 "qvm-run of a paused VM fails at once"
like "$out" "VM is paused: unpause it first" "saying it is paused"
run qvm-unpause $C
is "$rc/$(state $C)" "0/Running" "qvm-unpause resumes it"
is "$(qvm-run -p $C 'echo awake')" "awake" "and it runs commands again"
is "$(QUBES_VMM_PLUGIN_DIR=$nobackend qvm-run -p $C 'echo awake')" "awake" \
   "without the hypervisor again"
# Resumed behind our back: qvm-run asks the hypervisor while the mark is
# there, and runs; qvm-unpause, refusing, drops the mark.
qvm-pause $C
virsh -c "$QUBES_VMM_URI" resume $C >/dev/null
is "$(timeout 60 qvm-run -p $C 'echo resumed')" "resumed" "a VM resumed behind our back runs commands"
run qvm-unpause $C
like "$out" "VM not paused" "qvm-unpause says it is not paused"
is "$(QUBES_VMM_PLUGIN_DIR=$nobackend qvm-run -p $C 'echo fast')" "fast" \
   "and from then on it needs no hypervisor"
# Paused behind our back (no mark): the daemon takes the command, which runs
# once the VM is resumed.
virsh -c "$QUBES_VMM_URI" suspend $C >/dev/null
(sleep 2; virsh -c "$QUBES_VMM_URI" resume $C >/dev/null) &
resumer=$!
is "$(timeout 60 qvm-run -p $C 'echo late')" "late" \
   "a command for a VM paused behind our back runs when it is resumed"
wait $resumer

run qvm-kill $C
is "$rc" 0 "qvm-kill stops a running VM"
is "$(state $C)" "Halted" "it is Halted at once"
is "$(stat -c '%U' "$B/appvms/$C/volatile.img" "$B/appvms/$C/private.img" | tr '\n' ' ')" "root root " \
   "and libvirt has given its images back to root"
run qvm-kill $C
like "$out" "VM already stopped!" "killing a halted VM says so"

qvm-start -q $C
qvm-pause $C
pid=$(pgrep -f "guest=$C," | head -n 1)
kill -9 "$pid" 2>/dev/null
for i in $(seq 50); do [ "$(state $C)" = Halted ] && break; sleep 0.1; done
is "$(state $C)" "Halted" "a QEMU killed from outside (the VM paused) leaves the VM Halted"
run qvm-start -q $C
is "$rc" 0 "and it starts again"
is "$(QUBES_VMM_PLUGIN_DIR=$nobackend qvm-run -p $C 'echo again')" "again" \
   "and runs commands, without the hypervisor: the start forgot the pause"
# Its qrexec-daemon killed: a start serves the running VM again (a new
# daemon, the same domain); a start of a served VM is still refused.
id=$(virsh -c "$QUBES_VMM_URI" domid $C)
pkill -KILL -f "qrexec-daemon $C\$"
for i in $(seq 50); do pgrep -f "qrexec-daemon $C\$" >/dev/null || break; sleep 0.1; done
run qvm-start $C
is "$rc/$(virsh -c "$QUBES_VMM_URI" domid $C)" "0/$id" "qvm-start of a running VM whose qrexec-daemon died: served again"
like "$out" "$C runs without its qrexec daemon: serving it again" "and says so"
is "$(qvm-run -p $C 'echo served')" "served" "it runs commands again"
run qvm-start $C
like "$rc/$out" "1/" "and a start of the served VM is refused"
qvm-kill $C

# The monitor layout goes to a VM whose GUI starts.
printf '1920 1080 0 0\n1280 1024 1920 56\n' > "$B/monitor-layout"
run qvm-start $C
like "$out" "Monitor layout (from monitor-layout) sent to $C" "qvm-start sends the monitor layout"
is "$(qvm-run -p $C 'cat /tmp/qubes-monitor-layout')" "1920 1080 0 0
1280 1024 1920 56" "the guest's qubes.SetMonitorLayout received it, one W H X Y line per monitor"
# CPU use over an interval, from the hypervisor: a VM in a busy loop.
qvm-run $C 'while :; do :; done' >/dev/null 2>&1 &
busy=$!
sleep 1
pct=$(qvm-ls --cpu-interval 1000 | awk -F'|' -v vm=" $C " '$1 ~ vm {gsub(/ /, "", $11); print $11}')
kill $busy 2>/dev/null
ok "$(echo "$pct" | awk '{exit !($1 > 40)}'; echo $?)" "qvm-ls --cpu-interval shows a busy VM's CPU use (${pct}%)"
qvm-kill $C
qvm-start -q --no-guid $C
is "$(qvm-run -p $C 'cat /tmp/qubes-monitor-layout 2>/dev/null || echo none')" "none" \
   "with --no-guid, none is sent"

# A reader slower than the guest writes: the guest waits for us, and every
# frame arrives whole (a guest that dropped a stalled frame had us read
# output as frames: exit 42 after 262 KB).
{ qvm-run -p $C 'head -c 4000000 /dev/zero'; echo $? > "$SCRATCH/slow.rc"; } |
    (sleep 8; wc -c) > "$SCRATCH/slow.out"
is "$(tr -d ' ' < "$SCRATCH/slow.out")/$(cat "$SCRATCH/slow.rc")" "4000000/0" \
   "4 MB to a reader that sleeps 8 s first: all of it, exit status 0"
qvm-kill $C

# A guest that never answers the monitor layout: qvm-start says so within
# its deadline and lets the VM's agent lock go (it used to hang for ever
# holding it, and every later qvm-run with it).
(qvm-start $C > "$SCRATCH/start.out" 2>&1; echo $? > "$SCRATCH/start.rc") &
for i in $(seq 400); do [ -S "$R/vms/$C/agent.sock" ] && break; sleep 0.05; done
"$HELPERS/hostile-agent" "$R/vms/$C/agent.sock" silent > "$SCRATCH/hostile.out" &
hostile=$!
t0=$(date +%s)
for i in $(seq 900); do [ -s "$SCRATCH/start.rc" ] && break; sleep 0.1; done
took=$(($(date +%s) - t0))
kill $hostile 2>/dev/null
is "$(cat "$SCRATCH/start.rc" 2>/dev/null)" 0 "qvm-start of a VM whose guest never answers the layout ends ($took s)"
like "$(cat "$SCRATCH/start.out")" "did not answer within" "and says the guest did not answer"
flock -n "$R/vms/$C/agent.lock" true
ok $? "and holds the VM's agent lock no more"
qvm-kill $C
rm -f "$B/monitor-layout"

# Concurrent starts of a template and its children: never both running.
both=0 none=0
for round in $(seq 30); do
    qvm-start -q --no-wait $T 2>/dev/null &
    qvm-start -q --no-wait $C 2>/dev/null &
    qvm-start -q --no-wait $D 2>/dev/null &
    wait_jobs 120 "concurrent starts, round $round"
    t=$(state $T) c=$(state $C) d=$(state $D)
    up_t=0 up_c=0
    [ "$t" = Halted ] || up_t=1
    [ "$c" = Halted ] && [ "$d" = Halted ] || up_c=1
    [ $up_t = 1 ] && [ $up_c = 1 ] && { both=$((both + 1)); diag "round $round: $T $t, $C $c, $D $d"; }
    [ $up_t = 0 ] && [ $up_c = 0 ] && none=$((none + 1))
    for vm in $T $C $D; do virsh -c "$QUBES_VMM_URI" destroy "$vm" >/dev/null 2>&1; done
done
is "$both" 0 "30 rounds of concurrent starts never leave the template and a child both running"
is "$none" 0 "and every round started one side"

done_testing
