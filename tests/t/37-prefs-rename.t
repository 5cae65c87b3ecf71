#!/bin/sh
# A rename (qvm-prefs -s VM name NEW) takes everything named after the VM
# with it, or changes nothing: the record (others name it by qid), dir_path
# and conf_file, its directory (firewall rules and conf file inside), its
# run directory; a template's DispVM template T-dvm and the debug root
# layers of VMs based on it follow; savefile sets under either name are
# forgotten. On VMs the tools made and on VMs of the R2 fixture.
. "$(dirname "$0")/../lib.sh"
export QUBES_OFFLINE=1
B=$QUBES_BASE_DIR R=$QUBES_RUN_DIR db=$QUBES_BASE_DIR/qubes.xml

attrs() {  # attrs VM: its record as qubes.xml holds it, one "attr=value" a line
    "$HELPERS/xmldump" "$db" | sed -n "s/^[A-Za-z]*\[$1\] //p"
}
attr() { attrs "$1" | sed -n "s/^$2=//p"; }
# What a rename may touch: every file under the base and run directories
# (name, type, size, inode), and the database's bytes.
snapshot() {
    find "$B" "$R" -printf '%p %y %s %i\n' 2>/dev/null | LC_ALL=C sort
    sha256sum < "$db"
}
unchanged() {  # unchanged BEFORE NAME
    now=$(snapshot)
    if [ "$1" = "$now" ]; then
        ok 0 "$2"
    else
        ok 1 "$2"
        printf '%s\n' "$1" > "$SCRATCH/snap.before"
        printf '%s\n' "$now" > "$SCRATCH/snap.after"
        diff "$SCRATCH/snap.before" "$SCRATCH/snap.after" | sed 's/^/#   /'
    fi
}
# hold_daemon_lock VM: what a running VM's qrexec-daemon holds; $holder is
# the process holding it (kill it to let go).
hold_daemon_lock() {
    mkdir -p "$R/vms/$1"
    rm -f "$SCRATCH/locked"
    (exec 9>"$R/vms/$1/qrexec.lock" && flock 9 && : > "$SCRATCH/locked" && exec sleep 60) &
    holder=$!
    for i in $(seq 100); do [ -e "$SCRATCH/locked" ] && break; sleep 0.05; done
}
let_go() {
    kill "$holder"
    wait "$holder" 2>/dev/null
}
has_qemu_img() { command -v qemu-img >/dev/null 2>&1; }
backing_of() {
    qemu-img info --output=json "$1" | sed -n 's/.*"backing-filename": "\([^"]*\)".*/\1/p'
}

# ---- VMs the tools made ----
truncate -s 64M "$SCRATCH/root.img"
qvm-create -q -l red --net -s sys-net &&
    qvm-create -q -l black --hvm-template -r "$SCRATCH/root.img" rntpl &&
    qvm-create -q -l blue -H -t rntpl work &&
    qvm-prefs -s work netvm sys-net &&
    qvm-firewall -a work 10.0.0.0/8 tcp 443 &&
    qvm-prefs -s rntpl drive cdrom:work:/home/user/a.iso
ok $? "a NetVM, a template HVM and an HVM based on it, with a firewall rule, a drive on it"
mkdir -p "$R/vms/work" && echo "what its daemon said" > "$R/vms/work/qrexec.log"
: > "$B/appvms/work/work.conf"
kept=$(attrs work | grep -v -e '^name=' -e '^dir_path=' -e '^conf_file=')

run qvm-prefs -s work name office
is "$rc" 0 "a halted VM is renamed"
test -d "$B/appvms/office" && test ! -e "$B/appvms/work" && test -f "$B/appvms/office/private.img"
ok $? "its directory moved with its files"
is "$(attr office dir_path)" "$B/appvms/office" "dir_path names the new directory"
is "$(attr office conf_file)" "office.conf" "conf_file is NEW.conf"
test -f "$B/appvms/office/office.conf" && test ! -e "$B/appvms/office/work.conf"
ok $? "and the conf file in the directory is renamed NEW.conf"
is "$(attrs office | grep -v -e '^name=' -e '^dir_path=' -e '^conf_file=')" "$kept" \
   "every other attribute is kept (qid, uuid, template, netvm, services, ...)"
like "$(qvm-firewall -l office)" "10.0.0.0/8 tcp 443" "its firewall rules came with it"
test -f "$R/vms/office/qrexec.log" && test ! -e "$R/vms/work"
ok $? "its run directory moved"
run qvm-prefs -g work name
like "$out" "'work' does not exist" "the old name is gone"
is "$(qvm-prefs -g rntpl drive)" "cdrom:office:/home/user/a.iso" \
   "a drive naming it as its backend VM (the one reference by name) follows"

# Others name a VM by qid: they follow a NetVM's rename, and so do the globals.
run qvm-prefs -s sys-net name uplink
is "$rc/$(qvm-prefs -g office netvm)" "0/uplink" "a VM's netvm follows its NetVM's rename"
is "$(qubes-prefs -g default-fw-netvm)/$(qubes-prefs -g clockvm)" "uplink/uplink" \
   "and so do default-fw-netvm and clockvm"
test -d "$B/servicevms/uplink"
ok $? "a NetVM's directory is in servicevms"

# What an earlier VM of the new name left in the run directory is not met.
mkdir -p "$R/vms/later" && echo stale > "$R/vms/later/stale"
run qvm-prefs -s office name later
is "$rc" 0 "a rename onto a name an earlier VM left a run directory under"
test -f "$R/vms/later/qrexec.log" && test ! -e "$R/vms/later/stale"
ok $? "the VM's own run directory is there, the leftover is gone"
is "$(ls "$R/vms" | grep -c leftover)" 0 "and nothing is left aside"

# A savefile set (dvmdata) under the new name is an earlier VM's: forgotten.
mkdir -p "$B/dvmdata"
for f in savefile meta root.qcow2 private.img; do echo x > "$B/dvmdata/latest.$f"; done
run qvm-prefs -s later name latest
is "$rc/$(ls "$B/dvmdata" | grep -c '^latest\.')" "0/0" \
   "a savefile set an earlier VM left under the new name is forgotten"
qvm-prefs -s latest name later

# ---- refused: nothing changes ----
refused() {  # refused NAME EXPECT CMD...
    name=$1 expect=$2
    shift 2
    before=$(snapshot)
    run "$@"
    ok "$([ "$rc" -eq 1 ]; echo $?)" "$name: exit 1"
    like "$out" "$expect" "$name: says why"
    unchanged "$before" "$name: nothing changed"
}
mkdir -p "$B/appvms/taken"
refused "target directory exists" "name: $B/appvms/taken already exists" \
    qvm-prefs -s later name taken
rmdir "$B/appvms/taken"
: > "$B/appvms/later/other.conf"
refused "a file NEW.conf in the directory" "name: $B/appvms/later/other.conf already exists" \
    qvm-prefs -s later name other
rm "$B/appvms/later/other.conf"
refused "a name a VM has" "name: a VM named 'rntpl' already exists" qvm-prefs -s later name rntpl

hold_daemon_lock later
refused "a running VM (offline: its qrexec-daemon holds its lock)" \
    "Cannot change the name of a running VM ('later' has a qrexec-daemon" \
    qvm-prefs -s later name idle
refused "a template while a VM based on it runs" \
    "Cannot rename template 'rntpl' while a VM based on it runs ('later' has a qrexec-daemon" \
    qvm-prefs -s rntpl name rnbase
let_go

# ---- a template: its T-dvm and the debug layers of VMs based on it ----
qvm-create -q -l gray -H -t rntpl rntpl-dvm && qvm-create -q -l red -H rnx-dvm
ok $? "rntpl-dvm, the template's DispVM template, and an unrelated rnx-dvm"
refused "a template whose T-dvm's new name is taken" \
    "'rntpl-dvm', the DispVM template of 'rntpl', is renamed 'rnx-dvm' with it: name: a VM named 'rnx-dvm' already exists" \
    qvm-prefs -s rntpl name rnx
refused "a template whose T-dvm's new name is too long" "longer than 31 characters" \
    qvm-prefs -s rntpl name abcdefghijabcdefghijabcdefghi

for f in savefile meta root.qcow2 private.img; do echo x > "$B/dvmdata/rntpl-dvm.$f"; done
qvm-prefs -s later debug on
if has_qemu_img; then
    qemu-img create -q -f qcow2 -F raw -b "$B/vm-templates/rntpl/root.img" \
        "$B/appvms/later/volatile.img"
fi
run qvm-prefs -s rntpl name rnbase
is "$rc" 0 "a template is renamed"
test -f "$B/vm-templates/rnbase/root.img" && test ! -e "$B/vm-templates/rntpl"
ok $? "its directory moved"
is "$(qvm-prefs -g later template)" "rnbase" "VMs based on it follow (by qid)"
is "$(qvm-prefs -g rnbase-dvm template)/$(attr rnbase-dvm dir_path)" "rnbase/$B/appvms/rnbase-dvm" \
   "its DispVM template rntpl-dvm is rnbase-dvm now, with its directory"
test -d "$B/appvms/rnbase-dvm" && test ! -e "$B/appvms/rntpl-dvm"
ok $? "whose directory moved too"
is "$(ls "$B/dvmdata" | grep -c '^rntpl-dvm\.')" 0 \
   "the savefile set of rntpl-dvm is forgotten (its root layer named the old root image)"
if has_qemu_img; then
    is "$(backing_of "$B/appvms/later/volatile.img")" "$B/vm-templates/rnbase/root.img" \
       "a debug root layer kept by a VM based on it names the new root image"
else
    ok 0 "# SKIP no qemu-img"
fi

# The DispVM template alone: its savefile set goes.
for f in savefile meta root.qcow2 private.img; do echo x > "$B/dvmdata/rnbase-dvm.$f"; done
run qvm-prefs -s rnbase-dvm name scratch
is "$rc/$(ls "$B/dvmdata" | grep -c '^rnbase-dvm\.')" "0/0" \
   "a DispVM template renamed loses its savefile set (a DispVM of rnbase makes a new rnbase-dvm)"

# ---- a failure midway: everything goes back ----
# The save fails after the directories have moved (a full file system): a
# template, its T-dvm, their run directories and a leftover under the new
# name are all as they were.
mnt=$SCRATCH/full
mkdir -p "$mnt"
if [ "$(id -u)" = 0 ] && mount -t tmpfs -o size=2m,nr_inodes=2000 tmpfs "$mnt" 2>/dev/null; then
    trap 'umount "$mnt" 2>/dev/null; rm -rf "$SCRATCH"' EXIT
    export QUBES_BASE_DIR=$mnt/base
    B=$QUBES_BASE_DIR db=$QUBES_BASE_DIR/qubes.xml
    qvm-create -q -l black --hvm-template full && qvm-create -q -l gray -H -t full full-dvm
    ok $? "a template and its T-dvm on a small file system"
    mkdir -p "$R/vms/full" "$R/vms/full-dvm" "$R/vms/fuller"
    echo log > "$R/vms/full/qrexec.log"
    echo stale > "$R/vms/fuller/stale"
    dd if=/dev/zero of="$mnt/filler" bs=4k 2>/dev/null
    refused "a save that fails (a full disk)" "No space left on device" \
        qvm-prefs -s full name fuller
    test -d "$B/vm-templates/full" && test -d "$B/appvms/full-dvm" &&
        test -f "$R/vms/full/qrexec.log" && test -f "$R/vms/fuller/stale"
    ok $? "the directories are back where they were"
    rm -f "$mnt/filler"
    run qvm-prefs -s full name fuller
    is "$rc/$(qvm-prefs -g fuller-dvm template)" "0/fuller" "with room again, the rename is done"
    umount "$mnt"
    export QUBES_BASE_DIR=$SCRATCH/base
    B=$QUBES_BASE_DIR db=$QUBES_BASE_DIR/qubes.xml
else
    ok 0 "# SKIP mounting a small tmpfs needs root"
fi

# ---- VMs of the R2 fixture ----
rm -rf "$B" "$R"
mkdir -p "$B"
use_fixture
mkdir -p "$B/appvms/test-work"
echo data > "$B/appvms/test-work/private.img"
: > "$B/appvms/test-work/test-work.conf"
qvm-firewall -a test-work 192.0.2.0/24 any
kept=$(attrs test-work | grep -v -e '^name=' -e '^dir_path=' -e '^conf_file=')
is "$(attr test-work dir_path)" "/var/lib/qubes/appvms/test-work" "test-work's dir_path is the R2 host's"

run qvm-prefs -s test-work name work2
is "$rc" 0 "a VM of the R2 file is renamed"
is "$(attr work2 dir_path)" "$B/appvms/work2" "its dir_path is its new directory, not the R2 host's"
is "$(attr work2 conf_file)" "work2.conf" "its conf_file is work2.conf"
is "$(attrs work2 | grep -v -e '^name=' -e '^dir_path=' -e '^conf_file=')" "$kept" \
   "every other attribute is kept, backup_* among them"
test -f "$B/appvms/work2/private.img" && test -f "$B/appvms/work2/work2.conf" &&
    test ! -e "$B/appvms/test-work"
ok $? "its directory moved, its conf file renamed"
like "$(qvm-firewall -l work2)" "192.0.2.0/24 any" "its firewall rules came with it"

run qvm-prefs -s banking name bank
is "$rc/$(attr bank dir_path)" "0/$B/appvms/bank" "a VM without files gets the new dir_path"
test ! -e "$B/appvms/bank"
ok $? "and no directory is made for it"

run qvm-prefs -s test-template-clone name tclone
is "$rc" 0 "a template of the file is renamed"
is "$(qvm-prefs -g test-custom-template-appvm template)/$(qvm-prefs -g testproxy2 template)" \
   "tclone/tclone" "the VMs based on it follow"
is "$(attr tclone dir_path)" "$B/vm-templates/tclone" "its dir_path is in vm-templates"

run qvm-prefs -s firewallvm name fw
is "$rc/$(qvm-prefs -g personal netvm)" "0/fw (default)" "VMs behind the renamed ProxyVM follow"
is "$(qubes-prefs -g default-netvm)/$(qubes-prefs -g updatevm)" "fw/fw" \
   "and so do default-netvm and updatevm"

mkdir -p "$B/dvmdata"
for f in savefile meta root.qcow2 private.img; do
    echo x > "$B/dvmdata/fedora-20-x64-dvm.$f"
done
run qvm-prefs -s fedora-20-x64-dvm name f20-old-dvm
is "$rc/$(ls "$B/dvmdata" | grep -c '^fedora-20-x64-dvm\.')" "0/0" \
   "the file's DispVM template is renamed, its savefile set forgotten"

refused "a template installed by RPM" "name: 'fedora-20-x64' was installed by RPM" \
    qvm-prefs -s fedora-20-x64 name f20
refused "a DispVM" "property 'name' does not apply to 'disp50'" qvm-prefs -s disp50 name d
refused "dom0" "dom0's properties cannot be changed" qvm-prefs -s dom0 name d

# Every VM of the R2 file, under the names given here.
want=$( ("$HELPERS/xmldump" "$FIXTURES/qubes-r2.xml"; echo 'X[dom0] qid=0') |
    sed -n 's/^[A-Za-z]*\[\([^]]*\)\] qid=.*/\1/p' |
    sed -e 's/^test-work$/work2/' -e 's/^banking$/bank/' -e 's/^test-template-clone$/tclone/' \
        -e 's/^firewallvm$/fw/' -e 's/^fedora-20-x64-dvm$/f20-old-dvm/' | LC_ALL=C sort)
is "$(qvm-ls --raw-list | LC_ALL=C sort)" "$want" "the saved file loads, with every VM under its name"

# ---- after a rename, the VM starts under its new name (libvirt's test driver) ----
if has_qemu_img; then
    unset QUBES_OFFLINE
    export QUBES_VMM_URI=test:///default
    rm -rf "$B" "$R"
    mkdir -p "$B"
    QUBES_OFFLINE=1 qvm-create -q -l black --hvm-template -r "$SCRATCH/root.img" stpl &&
        QUBES_OFFLINE=1 qvm-create -q -l red -H -t stpl skid
    run qvm-prefs -s skid name srun
    is "$rc" 0 "online, a halted VM is renamed (the hypervisor says it is halted)"
    run qvm-start --no-wait srun
    is "$rc" 0 "the renamed VM starts"
    test -f "$B/appvms/srun/volatile.img" && test -d "$R/vms/srun" && test ! -e "$R/vms/skid"
    ok $? "its root layer and run directory are under the new name"
    is "$(backing_of "$B/appvms/srun/volatile.img")" "$B/vm-templates/stpl/root.img" \
       "its root layer is over its template's root image"
    QUBES_OFFLINE=1 qvm-create -q -l red -H test
    run qvm-prefs -s test name other
    like "$out" "Cannot change the name of a running VM ('test' is " \
         "a VM whose domain runs (the test driver's 'test') is not renamed"
else
    ok 0 "# SKIP no qemu-img"
fi

done_testing
