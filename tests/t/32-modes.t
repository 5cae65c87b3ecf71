#!/bin/sh
# What the tools make is root's and QEMU's group's, never open to other
# users: directories 0750 in QEMU's group (libvirt-qemu, or root's where
# there is no such user), images, layers, logs and firewall files without
# world bits. On libvirt's test driver, so no QEMU runs.
. "$(dirname "$0")/../lib.sh"
export QUBES_VMM_URI=test:///default
B=$QUBES_BASE_DIR R=$QUBES_RUN_DIR
if [ "$(id -u)" != 0 ]; then
    echo "1..0 # SKIP the tools give directories to QEMU's group only as root"
    exit 0
fi
group=$(id -gn libvirt-qemu 2>/dev/null || echo root)

truncate -s 64M "$SCRATCH/root.img"
mkdir -p "$SCRATCH/kernel" && echo k > "$SCRATCH/kernel/vmlinuz"
qvm-create -q -l black --hvm-template -r "$SCRATCH/root.img" --kernel "$SCRATCH/kernel" tpl
qvm-create -q -l blue -H -t tpl kid
qvm-firewall -P deny kid
qvm-start -q --no-wait kid      # its root layer and run directory

for d in "$B/vm-templates" "$B/vm-templates/tpl" "$B/vm-templates/tpl/kernel" \
         "$B/appvms" "$B/appvms/kid" "$R" "$R/vms" "$R/vms/kid"; do
    is "$(stat -c '%U:%G %a' "$d")" "root:$group 750" "${d#$SCRATCH/}: root:$group, mode 750"
done
for f in "$B/vm-templates/tpl/root.img" "$B/vm-templates/tpl/private.img" \
         "$B/appvms/kid/private.img" "$B/appvms/kid/volatile.img" \
         "$B/appvms/kid/firewall.xml" "$B/qubes.xml"; do
    m=$(stat -c %a "$f")
    ok "$([ -n "$m" ] && [ $((0$m & 07)) = 0 ]; echo $?)" "${f#$SCRATCH/}: nothing for other users (mode $m)"
done
is "$(stat -c %a "$B/appvms/kid/volatile.img")" 600 "a root layer is 600"
is "$(stat -c %a "$B/appvms/kid/firewall.xml")" 640 "firewall.xml is 640"
# An old directory (made 0755 by an earlier version) is left as it is.
mkdir -m 0755 "$B/appvms/old" 2>/dev/null
qvm-create -q -l red -H -t tpl old 2>/dev/null
ok "$([ "$(stat -c %a "$B/appvms/old")" = 755 ]; echo $?)" "a directory that exists is not changed"

# A removed VM leaves no run directory for a VM of its name made later.
qvm-remove -q kid 2>/dev/null || qvm-remove kid >/dev/null
ok "$([ ! -e "$R/vms/kid" ] && [ ! -e "$B/appvms/kid" ]; echo $?)" "qvm-remove takes the VM's run directory with its files"
done_testing
