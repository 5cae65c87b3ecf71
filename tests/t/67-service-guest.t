#!/bin/sh
# qvm-service end to end: what qubes.xml says of a VM's services is what its
# guest finds at boot (/run/qubes-service/NAME, qubes-service-enabled), and a
# change takes effect at the next start. One guest, booted twice. Needs
# root, `make vmm-up` and `make guest`.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../e2e.sh"
V=e2e-svc-$$
trap 'virsh -c "$QUBES_VMM_URI" destroy $V >/dev/null 2>&1; rm -rf "$SCRATCH"' EXIT
db=$QUBES_BASE_DIR/qubes.xml
# What the guest sees: enabled, then disabled, then each name's answer.
seen() {
    qvm-run -p $V 'ls /run/qubes-service | tr "\n" " "; printf "|"; ls /run/qubes-service-disabled | tr "\n" " "'
}
answers() {
    qvm-run -p $V 'for s in svc-on svc-off svc-gone odd; do qubes-service-enabled $s; printf "$s=$? "; done'
}

qvm-create -q -l red -H -r "$GUEST/root.img" -k "$GUEST/kernel" $V
qvm-service -e $V svc-on && qvm-service -d $V svc-off && qvm-service -e $V svc-gone &&
    qvm-service -D $V svc-gone
is "$(qvm-prefs -g $V services)" "{'svc-on': True, 'svc-off': False}" "(services set: one on, one off, one removed)"
# A key the original's file could hold that is no service name.
sed -i "s|'svc-off': False}|'svc-off': False, 'odd key': True}|" "$db"

run qvm-start $V
is "$rc" 0 "the VM starts"
like "$out" "Not telling '$V' of a service: service name 'odd key'" \
     "a key that is no service name stays behind, said so"
is "$(seen)" "svc-on |svc-off " \
   "the guest has /run/qubes-service/svc-on and /run/qubes-service-disabled/svc-off, nothing else"
is "$(answers)" "svc-on=0 svc-off=1 svc-gone=2 odd=2 " \
   "qubes-service-enabled: 0 on, 1 off, 2 not set (the VM decides)"
like "$(qvm-run -p $V 'cat /proc/cmdline')" " qubes.services=svc-on,!svc-off " \
     "they came on the kernel command line"

# Changed while it runs: the guest learns at its next start, and nothing of
# the first boot stays behind on its (persistent) root disk.
qvm-service -D $V svc-on && qvm-service -e $V svc-off && qvm-service -d $V svc-new
is "$(seen)" "svc-on |svc-off " "a change does not reach a running VM"
qvm-shutdown -q $V
run qvm-start -q $V
is "$rc" 0 "the VM starts again"
is "$(seen)" "svc-off |svc-new " "and then sees the services as they are now, and only them"
qvm-kill $V >/dev/null 2>&1

# A VM that boots from its own disk (no kernel of ours) cannot be told: its
# start says so. Its firmware finds nothing to boot; it is killed at once.
D=e2e-svcdisk-$$
trap 'virsh -c "$QUBES_VMM_URI" destroy $V >/dev/null 2>&1; virsh -c "$QUBES_VMM_URI" destroy $D >/dev/null 2>&1; rm -rf "$SCRATCH"' EXIT
qvm-create -q -l red -H $D && qvm-service -e $D svc-on
run qvm-start --no-wait $D
like "$out" "warning: '$D' boots from its disk, without a kernel of ours: its services (svc-on) do not reach it" \
     "a VM without a kernel of ours starts with a warning that its services do not reach it"
qvm-kill $D >/dev/null 2>&1
done_testing
