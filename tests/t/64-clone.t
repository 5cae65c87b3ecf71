#!/bin/sh
# qvm-clone. Offline: clones of a template-based AppVM (the original's
# file), a standalone HVM with its own kernel, a template HVM and a PV
# template, each compared attribute by attribute with its source, with its
# firewall rules, its disks equal and sparse; the refusals, which leave
# nothing behind; a full disk. The library's own test (tests/unit/
# test_clone.c): copies with progress, a running VM refused on libvirt's
# test driver, a source written to or a name taken during the copy. End to
# end (root, libvirt, the test guest): a standalone HVM made from the test
# guest writes a file to its private disk; cloning it while it runs is
# refused; its clone boots and sees the file.
. "$(dirname "$0")/../lib.sh"
export QUBES_OFFLINE=1
B=$QUBES_BASE_DIR
db=$B/qubes.xml

# attrs VM: every attribute of VM's record, "ELEMENT name=value" a line,
# sorted, read by an XML reader of its own (not the project's loader).
attrs() { "$HELPERS/xmldump" "$db" | sed -n "s/^\([A-Za-z]*\)\[$1\] /\1 /p"; }
attr() { attrs "$1" | sed -n "s/^[A-Za-z]* $2=//p"; }
# setattr VM ATTR VALUE: sets (or adds) an attribute in qubes.xml by hand,
# whatever qvm-prefs would say, while no tool runs.
setattr() {
    VM=$1 A=$2 V=$3 perl -i -pe 'if (/<\w+ [^>]*\bname="\Q$ENV{VM}\E"/) {
        s/\b\Q$ENV{A}\E="[^"]*"/$ENV{A}="$ENV{V}"/ or s{\s*/>}{ $ENV{A}="$ENV{V}"/>} }' "$db"
}
# What a clone's record must hold, from its source's: every attribute but
# the clone's identity (qid, name, dir_path, conf_file, uuid, mac, checked
# apart), with what the original did not clone as a new VM has it
# (installed_by_rpm, internal, autostart, debug: False; backup_*: none).
identity='^[A-Za-z]* (qid|name|dir_path|conf_file|uuid|mac)='
expected() {
    attrs "$1" | grep -Ev "$identity" | grep -v '^[A-Za-z]* backup_' |
        sed -E 's/^([A-Za-z]* (installed_by_rpm|internal|autostart|debug))=.*/\1=False/'
}
compare() {  # compare SRC NEW WHAT
    expected "$1" > "$SCRATCH/want"
    attrs "$2" | grep -Ev "$identity" > "$SCRATCH/got"
    diff -u "$SCRATCH/want" "$SCRATCH/got" > "$SCRATCH/diff"
    st=$?
    ok $st "$3: every attribute is its source's (but its identity and what is not cloned)"
    [ $st = 0 ] || sed 's/^/#   /' "$SCRATCH/diff"
}
identity_of() {  # identity_of SRC NEW DIR WHAT
    is "$(attr "$2" name) $(attr "$2" dir_path) $(attr "$2" conf_file) $(qvm-prefs -g "$2" mac)" \
       "$2 $3 $2.conf auto" "$4: its name, directory and conf file, and a MAC made from its qid"
    ok "$([ -n "$(attr "$2" qid)" ] && [ "$(attr "$2" qid)" != "$(attr "$1" qid)" ] &&
          [ "$(attrs "$2" | grep -c ' qid=')" = 1 ] &&
          [ "$("$HELPERS/xmldump" "$db" | grep -c "\] qid=$(attr "$2" qid)\$")" = 1 ]; echo $?)" \
       "$4: a qid of its own ($(attr "$2" qid), the source's $(attr "$1" qid))"
    ok "$(attr "$2" uuid | grep -Eqx '[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}' &&
          [ "$(attr "$2" uuid)" != "$(attr "$1" uuid)" ]; echo $?)" "$4: a UUID of its own"
}
# same_disk FROM TO WHAT: equal by checksum, and sparse: the copy takes about
# what the source takes, well below its size.
same_disk() {
    is "$(md5sum < "$2")" "$(md5sum < "$1")" "$3: equal to the source's (md5sum)"
    size=$(stat -c %s "$2") used=$(du -B1 "$2" | cut -f1) src_used=$(du -B1 "$1" | cut -f1)
    ok "$([ "$used" -lt $((size / 4)) ] && [ "$used" -le $((src_used + 1048576)) ]; echo $?)" \
       "$3: sparse ($used bytes allocated for $size, the source $src_used)"
}
# sparse_image FILE MIB: a sparse image of MIB MiB with random data in a
# few places.
sparse_image() {
    truncate -s "${2}M" "$1"
    for at in 0 7 $(($2 / 2)) $(($2 - 2)); do
        head -c 1048576 /dev/urandom | dd of="$1" bs=1M seek="$at" conv=notrunc status=none
    done
}
# Everything a refused clone could have left: the database and every file
# under the VM directories (names and sizes).
snapshot() { md5sum < "$db"; (cd "$B" && find . -path ./qubes.xml -prune -o -printf '%p %s\n' | sort); }

# ---- sources ----
use_fixture
W=test-work         # the original's: a template-based AppVM, with backup_* attributes
F=fedora-20-x64     # the original's PV template, installed by RPM
mkdir -p "$B/appvms/$W" "$B/vm-templates/$F"
sparse_image "$B/appvms/$W/private.img" 64
sparse_image "$B/vm-templates/$F/root.img" 64
sparse_image "$B/vm-templates/$F/private.img" 64
qvm-firewall -P deny $W >/dev/null && qvm-firewall -a $W 192.0.2.0/24 tcp 443 >/dev/null &&
    qvm-firewall -a $W 198.51.100.7 >/dev/null
ok $? "a template-based AppVM of the original's file, with files and firewall rules"

sparse_image "$SCRATCH/root.img" 64
mkdir "$SCRATCH/kernel"
head -c 300000 /dev/urandom > "$SCRATCH/kernel/vmlinuz"
head -c 100000 /dev/urandom > "$SCRATCH/kernel/initramfs"
run qvm-create -l purple -H -r "$SCRATCH/root.img" --kernel "$SCRATCH/kernel" solo
is "$rc" 0 "a standalone HVM with a root image and a kernel of its own"
sparse_image "$B/appvms/solo/private.img" 64
fw=$(qvm-prefs -g firewallvm qid) net=$(qvm-prefs -g netvm qid)
for kv in memory=800 maxmem=1600 vcpus=1 qrexec_timeout=90 default_user=alice \
          include_in_backups=False label=orange "services={'cups': True, 'ntpd': False}" \
          "pcidevs=['00:1f.2']" drive=cdrom:dom0:/srv/install.iso timezone=UTC \
          qrexec_installed=True guiagent_installed=True seamless_gui_mode=True \
          netvm_qid=$fw uses_default_netvm=False dispvm_netvm_qid=$net \
          uses_default_dispvm_netvm=False mac=00:16:3e:5e:6c:77 autostart=True debug=True \
          x_unknown=kept; do
    setattr solo "${kv%%=*}" "${kv#*=}"
done
qvm-firewall -a solo 203.0.113.0/24 udp 53 >/dev/null
is "$(qvm-prefs -g solo vcpus)/$(qvm-prefs -g solo netvm)/$(qvm-prefs -g solo mac)" \
   "1/firewallvm/00:16:3e:5e:6c:77" "its settings are none of the defaults (set in qubes.xml)"

run qvm-create -l black --hvm-template -r "$SCRATCH/root.img" tpl
is "$rc" 0 "a template HVM"
sparse_image "$B/vm-templates/tpl/private.img" 64
setattr tpl memory 1024 && setattr tpl services "{'meminfo-writer': True}"
qvm-create -q -l blue -H -t tpl kid
qvm-firewall -i deny tpl >/dev/null

# ---- clones ----
run qvm-clone $W ${W}2
is "$rc" 0 "qvm-clone clones a template-based AppVM"
compare $W ${W}2 "the AppVM's clone"
identity_of $W ${W}2 "$B/appvms/${W}2" "the AppVM's clone"
is "$(qvm-prefs -g ${W}2 type)/$(qvm-prefs -g ${W}2 template)" "AppVM/$F" \
   "it is an AppVM on the same template"
test ! -e "$B/appvms/${W}2/root.img"
ok $? "it gets no root image (its template's is its root)"
same_disk "$B/appvms/$W/private.img" "$B/appvms/${W}2/private.img" "its private.img"
cmp -s "$B/appvms/$W/firewall.xml" "$B/appvms/${W}2/firewall.xml"
ok $? "its firewall.xml is its source's"
is "$(qvm-firewall -l ${W}2 | sed 1d)" "$(qvm-firewall -l $W | sed 1d)" "qvm-firewall lists the same rules"
is "$(attrs $W | grep -c ' backup_')/$(attrs ${W}2 | grep -c ' backup_')" "2/0" \
   "the source's backup_* bookkeeping is not cloned"

run qvm-clone solo solo2
is "$rc" 0 "qvm-clone clones a standalone HVM"
like "$out" "Cloned 'solo' into HVM 'solo2' (qid $(attr solo2 qid)) in $B/appvms/solo2" "and says so"
like "$out" "--> Copying root.img (64.0 MiB, 4.0 MiB of data)" "showing each copy"
like "$out" "--> Copied root.img" "to its end"
compare solo solo2 "the HVM's clone"
identity_of solo solo2 "$B/appvms/solo2" "the HVM's clone"
is "$(attr solo autostart)/$(attr solo debug)/$(attr solo2 autostart)/$(attr solo2 debug)" \
   "True/True/False/False" "autostart and debug are not cloned (the original did not)"
is "$(attr solo2 x_unknown)" "kept" "an attribute this project does not know is cloned"
is "$(qvm-prefs -g solo2 mac)" "auto" "its MAC is no longer the source's"
for f in kernel/vmlinuz kernel/initramfs; do
    is "$(md5sum < "$B/appvms/solo2/$f")" "$(md5sum < "$B/appvms/solo/$f")" \
       "its $f is the source's (md5sum)"
done
same_disk "$B/appvms/solo/root.img" "$B/appvms/solo2/root.img" "its root.img"
same_disk "$B/appvms/solo/private.img" "$B/appvms/solo2/private.img" "its private.img"
cmp -s "$B/appvms/solo/firewall.xml" "$B/appvms/solo2/firewall.xml"
ok $? "its firewall rules are the source's"
is "$(stat -c '%U:%G %a' "$B/appvms/solo2" "$B/appvms/solo2/kernel" | tr '\n' ' ')" \
   "$(stat -c '%U:%G %a' "$B/appvms/solo" "$B/appvms/solo/kernel" | tr '\n' ' ')" \
   "its directories have the owner and mode of the source's"
is "$(stat -c '%U %a' "$B/appvms/solo2/root.img" "$B/appvms/solo2/private.img" | tr '\n' ' ')" \
   "root 660 root 660 " "its images are root's, mode 0660 (README: How QEMU is confined)"

run qvm-clone -q tpl tpl2
is "$rc/$out" "0/" "qvm-clone -q clones a template HVM and says nothing"
compare tpl tpl2 "the template's clone"
identity_of tpl tpl2 "$B/vm-templates/tpl2" "the template's clone"
is "$(qvm-prefs -g tpl2 type)" "TemplateHVM" "a clone of a template is a template"
same_disk "$B/vm-templates/tpl/root.img" "$B/vm-templates/tpl2/root.img" "its root.img"
same_disk "$B/vm-templates/tpl/private.img" "$B/vm-templates/tpl2/private.img" "its private.img"
cmp -s "$B/vm-templates/tpl/firewall.xml" "$B/vm-templates/tpl2/firewall.xml"
ok $? "its firewall rules are the source's"
run qvm-create -l green -H -t tpl2 kid2
is "$rc" 0 "a VM can be based on it"
is "$(qvm-prefs -g kid template)" "tpl" "and the source's children stay on the source"

run qvm-clone -q $F ${F}-copy
is "$rc" 0 "qvm-clone clones the original's PV template"
compare $F ${F}-copy "the PV template's clone"
is "$(qvm-prefs -g ${F}-copy type)/$(attr $F installed_by_rpm)/$(attr ${F}-copy installed_by_rpm)" \
   "TemplateVM/True/False" "a TemplateVM, not installed by RPM (the package manager did not)"
same_disk "$B/vm-templates/$F/root.img" "$B/vm-templates/${F}-copy/root.img" "its root.img"
test ! -e "$B/vm-templates/${F}-copy/firewall.xml"
ok $? "a source without a firewall file gives a clone without one"

run qvm-clone -q -p "$B/appvms/solo3/" solo solo3
is "$rc" 0 "-p naming the clone's own directory is accepted"
run env -u QUBES_OFFLINE qvm-clone -q --offline-mode solo solo4
is "$rc" 0 "--offline-mode clones without the hypervisor"

# ---- refusals: a clear message, nothing left ----
snapshot > "$SCRATCH/before"
refused() {  # refused WHAT EXPECTED-MESSAGE COMMAND...
    what=$1 msg=$2
    shift 2
    run "$@"
    is "$rc" 1 "$what: refused"
    like "$out" "qvm-clone: error: $msg" "$what: $msg"
    snapshot > "$SCRATCH/after"
    cmp -s "$SCRATCH/before" "$SCRATCH/after"
    st=$?
    ok $st "$what: nothing changed, nothing left"
    [ $st = 0 ] || diff "$SCRATCH/before" "$SCRATCH/after" | sed 's/^/#   /'
}
refused "an existing name" "A VM with the name '$W' already exists in the system" qvm-clone solo $W
refused "a bad name" "invalid VM name 'no way': only letters, digits, '_' and '-' are allowed" \
    qvm-clone solo "no way"
refused "a DispVM's name" "invalid VM name 'disp7': names disp<N> are kept for DispVMs" \
    qvm-clone solo disp7
refused "dom0's name" "invalid VM name 'dom0': reserved for the admin VM" qvm-clone solo dom0
refused "dom0" "dom0 cannot be cloned" qvm-clone dom0 x1
refused "a DispVM" "'disp50' is a DispVM: it is disposable and cannot be cloned (clone its template '$F')" \
    qvm-clone disp50 x2
refused "an unknown source" "A VM with the name 'nosuch' does not exist in the system" qvm-clone nosuch x3
refused "-p elsewhere" "-p $SCRATCH/elsewhere: the files of 'x4' can only go to $B/appvms/x4." \
    qvm-clone -p "$SCRATCH/elsewhere" solo x4
like "$out" "never where dir_path says" "and why"
test ! -e "$SCRATCH/elsewhere"
ok $? "-p elsewhere creates nothing there"
refused "-p another VM's directory" "-p $B/appvms/solo: the files of 'x5' can only go to $B/appvms/x5." \
    qvm-clone -p "$B/appvms/solo" solo x5
mkdir "$B/appvms/x6" && snapshot > "$SCRATCH/before"
refused "a directory of that name without a VM" "$B/appvms/x6 exists, but no VM 'x6' does" \
    qvm-clone solo x6
rmdir "$B/appvms/x6" && snapshot > "$SCRATCH/before"
refused "without --offline-mode, no hypervisor to ask whether the source runs" \
    "cannot tell whether 'solo' is running" env -u QUBES_OFFLINE qvm-clone solo x7
run qvm-clone solo
is "$rc" 2 "one name is a usage error"
run qvm-clone --help
like "$out" "Usage: qvm-clone [options] SRC NEW" "--help shows the usage"
run qvm-clone --version
like "$out" "hypervisor backends:" "--version names the backends"

# ---- the library's own test ----
run "$UNIT/test_clone"
is "$rc" 0 "the C test of copies with progress and of the clone's checks passes ($(echo "$out" | grep -c '^ok ') checks)"
[ "$rc" = 0 ] || echo "$out" | sed 's/^/#   /'

# ---- a full disk ----
mnt=$SCRATCH/full
mkdir -p "$mnt"
if [ "$(id -u)" = 0 ] && mount -t tmpfs -o size=48m tmpfs "$mnt" 2>/dev/null; then
    trap 'umount "$mnt" 2>/dev/null; rm -rf "$SCRATCH"' EXIT
    export QUBES_BASE_DIR=$mnt/base
    B=$QUBES_BASE_DIR db=$QUBES_BASE_DIR/qubes.xml
    mkdir -p "$B"
    truncate -s 256M "$SCRATCH/big.img"
    head -c 30000000 /dev/urandom | dd of="$SCRATCH/big.img" bs=1M seek=64 conv=notrunc status=none
    qvm-create -q -l red -H -r "$SCRATCH/big.img" big
    ok $? "a standalone HVM with 30 MB of data on a file system of 48 MB"
    free=$(df --output=avail "$mnt" | tail -n 1)
    snapshot > "$SCRATCH/before"
    run qvm-clone big big2
    is "$rc" 1 "its clone fails on the full file system"
    like "$out" "No space left on device" "and says why"
    snapshot > "$SCRATCH/after"
    cmp -s "$SCRATCH/before" "$SCRATCH/after"
    ok $? "no record, no directory and no partial copy are left"
    is "$(df --output=avail "$mnt" | tail -n 1)" "$free" "the space is given back"
    umount "$mnt"
else
    ok 0 "a full disk # SKIP mounting a small tmpfs needs root"
fi

# ---- end to end ----
if [ "$(id -u)" != 0 ] || [ ! -f "${QUBES_TEST_GUEST:-$top/build/guest}/root.img" ] ||
   ! virsh -c "${QUBES_E2E_URI:-qemu:///system}" version >/dev/null 2>&1; then
    ok 0 "end to end # SKIP needs root, a libvirt daemon (make vmm-up) and the test guest (make guest)"
    done_testing
    exit
fi
unset QUBES_OFFLINE
export QUBES_BASE_DIR=$SCRATCH/e2e/base QUBES_RUN_DIR=$SCRATCH/e2e/run
mkdir -p "$QUBES_BASE_DIR"
. "$(dirname "$0")/../e2e.sh"
db=$B/qubes.xml
S=cl-src-$$ N=cl-new-$$ X=cl-run-$$
cleanup() {
    for vm in $S $N; do virsh -c "$QUBES_VMM_URI" destroy "$vm" >/dev/null 2>&1; done
    rm -rf "$SCRATCH"
}
trap cleanup EXIT

run qvm-create -l red -H -s -r "$GUEST/root.img" --kernel "$GUEST/kernel" $S
is "$rc" 0 "a standalone HVM made from the test guest"
run qvm-start -q $S
is "$rc" 0 "it boots"
is "$(qvm-run -p $S "echo written-by-$S > /rw/clone-mark; sync; cat /rw/clone-mark")" "written-by-$S" \
   "it writes a file to its private disk"
snapshot > "$SCRATCH/before"
run qvm-clone $S $X
is "$rc" 1 "cloning it while it runs is refused"
like "$out" "Cannot clone '$S': the VM is Running, and its disks may change while they are copied; shut it down first" \
     "saying why"
snapshot > "$SCRATCH/after"
cmp -s "$SCRATCH/before" "$SCRATCH/after"
ok $? "and leaving nothing"
qvm-shutdown -q $S
run qvm-clone $S $N
is "$rc" 0 "once it is halted, it is cloned"
for f in root.img private.img kernel/vmlinuz kernel/initramfs; do
    is "$(md5sum < "$B/appvms/$N/$f")" "$(md5sum < "$B/appvms/$S/$f")" "the clone's $f is the source's"
done
run qvm-start -q $N
is "$rc" 0 "the clone boots"
is "$(qvm-run -p $N 'uname -n; cat /rw/clone-mark')" "$N
written-by-$S" "as itself, and sees the file its source wrote to its private disk"
qvm-shutdown -q $N

done_testing
