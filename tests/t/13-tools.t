#!/bin/sh
# Databases built by the tools: creation, defaults, allocation, files,
# property rules, removal rules, and the round trip of what they wrote.
. "$(dirname "$0")/../lib.sh"
export QUBES_OFFLINE=1
B=$QUBES_BASE_DIR
db=$B/qubes.xml
g() { qubes-prefs -g "$1"; }

run qvm-create -l red --net -s sys-net
is "$rc" 0 "qvm-create makes a NetVM in an empty base (the database is created)"
is "$(g default-fw-netvm)/$(g clockvm)" "sys-net/sys-net" \
   "the first NetVM becomes default-fw-netvm and clockvm"
qvm-create -q -l red --net -s sys-net2
is "$(g default-fw-netvm)" "sys-net" "a second NetVM does not take over"
qvm-create -q -l green --proxy -s sys-fw
is "$(g default-netvm)/$(g updatevm)" "sys-fw/sys-fw" \
   "the first ProxyVM becomes default-netvm and updatevm"
is "$(qvm-prefs -g sys-fw netvm)" "sys-net (default)" "a ProxyVM's netvm is the default firewall netvm"
is "$(qvm-prefs -g sys-net netid)/$(qvm-prefs -g sys-net2 netid)/$(qvm-prefs -g sys-fw netid)" \
   "1/2/3" "netids are allocated lowest first"

truncate -s 64M "$SCRATCH/src.img"
printf 'ROOT-MARK' | dd of="$SCRATCH/src.img" bs=1 seek=1048576 conv=notrunc status=none
run qvm-create -l black --hvm-template -r "$SCRATCH/src.img" tpl
is "$rc" 0 "qvm-create --hvm-template -r makes a TemplateHVM from a root image"
is "$(g default-template)" "tpl" "the first template becomes default-template"
T=$B/vm-templates/tpl
is "$(dd if="$T/root.img" bs=1 skip=1048576 count=9 status=none)" "ROOT-MARK" \
   "its root.img is a copy of the given image"
is "$(stat -c %s "$T/root.img")" "67108864" "the copy keeps the size"
ok "$([ "$(stat -c %b "$T/root.img")" -lt 1024 ]; echo $?)" "the copy stays sparse"
is "$(stat -c %s "$T/private.img")" "2147483648" "a fresh private.img is 2 GiB"
is "$(stat -c %b "$T/private.img")" "0" "and takes no space (sparse)"
test -f "$SCRATCH/src.img"
ok $? "-r leaves the source image in place"

printf 'PRIV-MARK' | dd of="$T/private.img" bs=1 seek=4096 conv=notrunc status=none
run qvm-create -l blue -H -t tpl work
is "$rc" 0 "qvm-create -H -t makes an HVM based on the TemplateHVM"
is "$(qvm-prefs -g work template)/$(qvm-prefs -g work type)" "tpl/HVM" "it records its template"
is "$(dd if="$B/appvms/work/private.img" bs=1 skip=4096 count=9 status=none)" "PRIV-MARK" \
   "its private.img is copied from the template's"
test ! -e "$B/appvms/work/root.img"
ok $? "it has no root.img of its own"
is "$(qvm-prefs -g work root_img)" "$T/root.img" "its root image is the template's"
is "$(qvm-prefs -g work netvm)" "sys-fw (default)" "it uses the default netvm"

truncate -s 8M "$SCRATCH/move.img"
qvm-create -q -l purple -H -R "$SCRATCH/move.img" solo
test ! -e "$SCRATCH/move.img" && test -f "$B/appvms/solo/root.img"
ok $? "-R moves the image into a standalone HVM"
is "$(qvm-prefs -g solo template)" "none" "-H without -t is a standalone HVM"
run qvm-create -l red -t tpl -r "$SCRATCH/src.img" -H child2
like "$out" "-r/-R give a root image to a template or standalone VM only" \
     "-r on a template-based VM is refused"
run qvm-create -l red appvm
like "$out" "default template 'tpl' is a TemplateHVM" "an AppVM refuses a TemplateHVM default"
run qvm-create -l red -t tpl appvm
like "$out" "needs a TemplateVM" "an AppVM cannot be based on a TemplateHVM"
run qvm-create -l pink x1
like "$out" "unknown label 'pink'" "an unknown label is refused"
run qvm-create x1
like "$out" "a label is required" "the label is required"
run qvm-create -l red -H work
like "$out" "already exists" "a duplicate name is refused"
run qvm-create -l red --hvm-template -t tpl tpl2
like "$out" "cannot be based on a template" "a TemplateHVM takes no template"
ls "$B/appvms" | sort > "$SCRATCH/dirs"
is "$(cat "$SCRATCH/dirs" | tr '\n' ' ')" "solo work " "refused creations leave no directory behind"

# qid allocation: the lowest free one.
q_solo=$(qvm-prefs -g solo qid)
qvm-remove -q solo
qvm-create -q -l red -H refill
is "$(qvm-prefs -g refill qid)" "$q_solo" "a freed qid is reused, lowest first"

# Property rules.
run qvm-prefs -s work memory lots
like "$out" "'lots' is not a number" "memory must be a number"
run qvm-prefs -s work vcpus 0
like "$out" "vcpus: must be positive" "vcpus must be positive"
run qvm-prefs -s work maxmem 10
is "$rc/$(qvm-prefs -g work maxmem)" "0/10" "maxmem below memory is taken, as the original took it"
run qvm-prefs -s work label pink
like "$out" "unknown label" "labels are checked"
run qvm-prefs -s work netvm tpl
like "$out" "not a NetVM or ProxyVM" "a netvm must be a NetVM or ProxyVM"
run qvm-prefs -s work debug maybe
like "$out" "not a boolean" "booleans are checked"
run qvm-prefs -s work kernel 9.9
like "$out" "does not apply" "HVMs have no kernel property"
run qvm-prefs -s sys-net kernel 9.9
like "$out" "version '9.9' is not installed" "a PV VM's kernel must be installed"
run qvm-prefs -s work template sys-net
like "$out" "needs a TemplateHVM" "an HVM's template must be a TemplateHVM"
run qvm-prefs -s sys-net template tpl
like "$out" "standalone" "a standalone VM cannot get a template"
run qvm-prefs -s work qid 7
like "$out" "read-only" "qid is read-only"
run qvm-prefs -s work nosuch 1
like "$out" "no property 'nosuch'" "an unknown property is named"
run qvm-prefs -g ghost memory
like "$out" "'ghost' does not exist" "an unknown VM is named"
run qvm-prefs -s work pcidevs "['zz:00.0']"
like "$out" "not a PCI address" "pcidevs are checked"
run qvm-prefs -s sys-fw netvm sys-fw
like "$out" "cannot be its own netvm" "a VM is not its own netvm"

# dispvm_netvm: the VM's own netvm by default, else one NetVM or ProxyVM, or none.
is "$(qvm-prefs -g work dispvm_netvm)" "$(qvm-prefs -g work netvm | sed 's/ (default)//') (default)" \
   "a VM's DispVMs get its own netvm by default"
run qvm-prefs -s work dispvm_netvm sys-net2
is "$rc/$(qvm-prefs -g work dispvm_netvm)" "0/sys-net2" "dispvm_netvm takes another NetVM"
grep -q 'name="work"[^>]*dispvm_netvm_qid="[0-9]*"[^>]*uses_default_dispvm_netvm="False"' "$B/qubes.xml"
ok $? "stored as dispvm_netvm_qid and uses_default_dispvm_netvm"
run qvm-prefs -s work dispvm_netvm tpl
like "$out" "not a NetVM or ProxyVM" "dispvm_netvm must be a NetVM or ProxyVM"
run qvm-prefs -s sys-fw dispvm_netvm sys-fw
like "$out" "cannot be the netvm of its own DispVMs" "a VM is not the netvm of its own DispVMs"
run qvm-remove sys-net2
like "$out" "it is the netvm of work" "a VM's dispvm_netvm cannot be removed"
qvm-prefs -s work dispvm_netvm none
is "$(qvm-prefs -g work dispvm_netvm)" "none" "none: its DispVMs have no network"
qvm-prefs -s work dispvm_netvm default
is "$(qvm-prefs -g work dispvm_netvm)" "$(qvm-prefs -g work netvm | sed 's/ (default)//') (default)" \
   "default: its own netvm again"

qvm-prefs -s sys-net2 netvm none >/dev/null 2>&1
run qvm-prefs -s sys-net netvm sys-fw
like "$out" "has no netvm" "a NetVM has no netvm"

qvm-prefs -s work memory 700 && qvm-prefs -s work vcpus 1 && qvm-prefs -s work label green \
  && qvm-prefs -s work netvm none && qvm-prefs -s work debug true >/dev/null
ok $? "valid values are accepted"
is "$(qvm-prefs -g work memory)/$(qvm-prefs -g work vcpus)/$(qvm-prefs -g work label)/$(qvm-prefs -g work netvm)/$(qvm-prefs -g work debug)" \
   "700/1/green/none/True" "and read back"

# Rename: the record and the directory follow.
run qvm-prefs -s work name office
is "$rc" 0 "a halted VM can be renamed"
test -d "$B/appvms/office" && test ! -e "$B/appvms/work"
ok $? "its directory is renamed with it"
is "$(qvm-prefs -g office dir)" "$B/appvms/office" "dir_path follows"
run qvm-prefs -s office name tpl
like "$out" "already exists" "renaming onto another VM's name is refused"

# Global defaults follow.
qvm-create -q -l green --proxy -s sys-fw2
qubes-prefs -s default-netvm sys-fw2
is "$(qvm-prefs -g refill netvm)" "sys-fw2 (default)" "VMs using the default netvm follow a new default"
is "$(qvm-prefs -g office netvm)" "none" "a VM with its own netvm setting does not"
run qubes-prefs -s default-template office
like "$out" "not a template" "default-template must be a template"
run qubes-prefs -s nosuch x
like "$out" "no global property" "an unknown global property is named"

# Root image sizes.
before=$(stat -c %s "$T/root.img")
run qvm-grow-root tpl 128M
is "$rc" 0 "qvm-grow-root grows a template's root image"
is "$(stat -c %s "$T/root.img")" "134217728" "to the size asked"
is "$(dd if="$T/root.img" bs=1 skip=1048576 count=9 status=none)" "ROOT-MARK" "keeping its content"
run qvm-grow-root tpl 64M
like "$out" "would lose data" "shrinking is refused"
run qvm-grow-root office 1G
like "$out" "resize the template instead" "a VM based on a template has no root of its own to grow"
run qvm-grow-root tpl lots
is "$rc" 2 "a size that is not one is a usage error"

# Removal rules.
run qvm-remove tpl
like "$out" "VMs based on it exist: office" "a template with children cannot be removed"
run qvm-remove sys-fw2
like "$out" "it is the netvm of" "a netvm in use cannot be removed"
run qvm-remove dom0
like "$out" "dom0 cannot be removed" "dom0 cannot be removed"
run qvm-remove ghost
like "$out" "does not exist" "removing an unknown VM names it"
run qvm-remove --just-db office
is "$rc" 0 "qvm-remove --just-db removes the record"
test -d "$B/appvms/office"
ok $? "and keeps the files"
run qvm-prefs -g office memory
like "$out" "does not exist" "the record is gone"
run qvm-remove refill
test ! -e "$B/appvms/refill"
ok $? "qvm-remove deletes the VM's directory"
run qvm-remove tpl
is "$rc" 0 "the template can go once its children are gone"
is "$(g default-template)" "none" "a removed default template is no longer the default"

# A hostile dir_path never leads qvm-remove outside the VM's own directory.
qvm-create -q -l red -H victim
mkdir -p "$SCRATCH/precious" && echo keep > "$SCRATCH/precious/file"
sed -i "s|dir_path=\"$B/appvms/victim\"|dir_path=\"$SCRATCH/precious\"|" "$db"
run qvm-remove victim
is "$rc" 0 "qvm-remove removes a VM whose dir_path names another place"
test ! -e "$B/appvms/victim"
ok $? "from its own directory: dir_path is ignored"
test -f "$SCRATCH/precious/file"
ok $? "and deletes nothing where dir_path points"

# Round trip of a database the tools built.
"$HELPERS/xmldump" "$db" > "$SCRATCH/built1"
qvm-prefs -s sys-fw memory "$(qvm-prefs -g sys-fw memory)"
"$HELPERS/xmldump" "$db" > "$SCRATCH/built2"
cmp -s "$SCRATCH/built1" "$SCRATCH/built2"
ok $? "a database the tools built survives a load/save round trip unchanged"

# qvm-ls's columns offline (no hypervisor is asked): -i, -n, -d, -k.
mib() { echo "$(($1 / 1048576)) MiB"; }
truncate -s 32M "$SCRATCH/ls.img"
qvm-create -q -l black --hvm-template -r "$SCRATCH/ls.img" lstpl
qvm-create -q -l blue -H -t lstpl lskid
qvm-prefs -s lskid netvm sys-fw
qvm-prefs -s sys-net kernelopts "nopat loglevel=3"
head -c 3145728 /dev/urandom | dd of="$B/appvms/lskid/private.img" conv=notrunc status=none
run qvm-ls -i -n -d -k
is "$rc" 0 "qvm-ls -i -n -d -k lists offline"
is "$(printf '%s\n' "$out" | awk -F'|' '{ h = ""; for (i = 1; i < NF; i++) { x = $i; gsub(/^ +| +$/, "", x); h = h (i > 1 ? "," : "") x } } h ~ /^name,/ { print h }')" \
   "name,on,state,updbl,type,label,mem MiB,cpu s,qid,xid,ip,ip back,gateway/DNS,priv-curr,priv-max,root-curr,root-max,vol-curr,disk,kernel,kernelopts" \
   "the columns of each option in the original's order; -n and -d leave out template, -d netvm"
qid=$(qvm-prefs -g lskid qid) fwnet=$(qvm-prefs -g sys-fw netid)
is "$(lscol "$out" lskid qid)/$(lscol "$out" lskid xid)" "$qid/-" "-i: the qid, and no xid for a VM that does not run"
is "$(lscol "$out" lskid ip)/$(lscol "$out" lskid 'gateway/DNS')/$(lscol "$out" lskid 'ip back')" \
   "10.137.$fwnet.$((qid + 2))/10.137.$fwnet.1/n/a" "-n: a VM's address and its netvm's gateway"
is "$(lscol "$out" sys-fw 'ip back')/$(lscol "$out" sys-net ip)" "10.137.$fwnet.1/-" \
   "-n: the gateway a ProxyVM holds for the VMs behind it; a NetVM has no address of its own"
priv=$B/appvms/lskid/private.img
is "$(lscol "$out" lskid priv-curr)/$(lscol "$out" lskid priv-max)" \
   "$(mib $(($(stat -c '%b * %B' "$priv"))))/$(mib "$(stat -c %s "$priv")")" \
   "-d: the private image's allocation and size (3 MiB written of 2 GiB)"
is "$(lscol "$out" lskid root-max)/$(lscol "$out" lskid vol-curr)" "32 MiB/-" \
   "-d: a child's root is its template's; no root layer before its first start"
is "$(lscol "$out" lskid disk)" "$(mib "$(du -s -B1 "$B/appvms/lskid" | cut -f1)")" \
   "-d: the whole directory, as du -s counts it"
is "$(lscol "$out" sys-net kernel)|$(lscol "$out" sys-net kernelopts)|$(lscol "$out" sys-fw kernelopts)" \
   "$(kcell sys-net kernel)|$(kcell sys-net kernelopts)|$(kcell sys-fw kernelopts)" \
   "-k: kernel and kernelopts as qvm-prefs has them, * for the default"
is "$(lscol "$out" lskid kernel)/$(lscol "$out" dom0 disk)" "$(kcell lskid kernel)/n/a" \
   "-k: n/a where the property does not apply (an HVM); -d: n/a for dom0"
run qvm-ls -n
like "$(printf '%s\n' "$out" | sed -n 2p)" "netvm" "-n alone keeps the netvm column"
run qvm-ls --mem
is "$rc/$(printf '%s\n' "$out" | wc -l)" "0/1" "qvm-ls --mem (the original's name of -m) offline: the table, no running VM"
like "$out" "guest" "with the guest's memory column"
run qvm-ls -m -d
like "$rc/$out" "2/qvm-ls: --memory is a table of its own: no columns to add" "-m with -d is a usage error"
run qvm-ls --raw-list -i
like "$rc/$out" "2/qvm-ls: --raw-list prints names only" "--raw-list with -i is a usage error"

# qvm-run's, qvm-start's and qvm-shutdown's new options, offline.
cp "$db" "$SCRATCH/db.before"
run qvm-run --no-auto -p lskid true
is "$rc" 1 "qvm-run --no-auto offline is an error (status 1)"
like "$out" "cannot run anything in 'lskid': VMM operations disabled in offline mode" \
     "naming the VM and offline mode"
test ! -e "$QUBES_RUN_DIR/vms/lskid"
ok $? "nothing of the VM was started (no run directory)"
run qvm-run --nogui -a --no-auto ghost true
like "$out" "'ghost' does not exist" "qvm-run --no-auto of an unknown VM names it (--nogui accepted)"
run qvm-run --localcmd "touch $SCRATCH/local-ran" lskid true
like "$out" "VMM operations disabled in offline mode" "qvm-run --localcmd offline is refused"
test ! -e "$SCRATCH/local-ran"
ok $? "before the local command runs"
run qvm-run --exclude sys-net true
like "$rc/$out" "2/qvm-run: --exclude goes with --all" "--exclude without --all is a usage error"
run qvm-run --all
like "$rc/$out" "2/qvm-run: --all wants a command" "--all without a command is a usage error"
run qvm-run --dispvm --localcmd cat true
like "$rc/$out" "2/qvm-run: --dispvm runs in a new DispVM: not with --all, --localcmd" \
     "--dispvm with --localcmd is a usage error"
run qvm-run --all true
like "$rc/$out" "1/qvm-run: error: cannot run anything: VMM operations disabled in offline mode" \
     "qvm-run --all offline is refused: no VM is known to run"
run qvm-run --all --offline-mode --exclude sys-net --exclude sys-fw true
like "$rc/$out" "1/qvm-run: error: cannot run anything: VMM operations disabled" "with --exclude too"
run qvm-run --help
like "$out" "--nogui         accepted and ignored" "qvm-run --help says --nogui is ignored"
run qvm-start --debug lskid
like "$rc/$out" "1/qvm-start: error: cannot start 'lskid': VMM operations disabled in offline mode" \
     "qvm-start --debug offline is refused"
run qvm-start --dvm lskid
like "$rc/$out" "2/qvm-start: --dvm takes the name of a DispVM template: TEMPLATE-dvm" \
     "qvm-start --dvm wants TEMPLATE-dvm (usage error)"
run qvm-start --dvm --debug lstpl-dvm
like "$rc/$out" "2/qvm-start: --dvm prepares a savefile: not with --debug" "--dvm with --debug is a usage error"
run qvm-start --dvm lstpl-dvm
like "$rc/$out" "1/qvm-start: error: cannot prepare the savefile of 'lstpl': VMM operations disabled in offline mode" \
     "qvm-start --dvm TEMPLATE-dvm prepares TEMPLATE's savefile: refused offline"
run qvm-shutdown --all lskid
like "$rc/$out" "2/qvm-shutdown: --all takes no VM name" "qvm-shutdown --all with a VM name is a usage error"
run qvm-shutdown --exclude lskid lskid
like "$rc/$out" "2/qvm-shutdown: --exclude goes with --all" "qvm-shutdown --exclude without --all is a usage error"
run qvm-shutdown --all --wait --exclude lskid
like "$rc/$out" "1/qvm-shutdown: error: cannot shut anything down: VMM operations disabled in offline mode" \
     "qvm-shutdown --all --wait offline is refused"
cmp -s "$db" "$SCRATCH/db.before"
ok $? "none of them changed qubes.xml (no lstpl-dvm, debug as it was)"

run qvm-create --help
like "$out" "Usage: qvm-create" "--help works"
for t in qvm-ls qvm-prefs qvm-remove qubes-prefs qvm-start qvm-shutdown qvm-kill qvm-pause \
         qvm-unpause qvm-run qvm-grow-root qvm-clone qvm-service qvm-block; do
    "$t" --help | grep -q "Usage: $t"
    ok $? "$t --help"
done
run qvm-create -l red
is "$rc" 2 "a missing argument is a usage error (status 2)"

# The programs that only ask for a DispVM load nothing of the database:
# every DispVM request starts one.
libs=$(ldd "$(command -v qfile-daemon-dvm)" | awk '{print $1}' | tr '\n' ' ')
ok "$(case "$libs" in *libxml2*) echo 1;; *) echo 0;; esac)" "qfile-daemon-dvm does not load libxml2 ($libs)"

# Nor does a VM's qrexec-daemon, which starts with every VM and faces its
# guest: its database work is qrexec-daemon-db's, beside the backends.
libs=$(ldd "$(command -v qrexec-daemon)" | awk '{print $1}' | tr '\n' ' ')
ok "$(case "$libs" in *libxml2*) echo 1;; *) echo 0;; esac)" "qrexec-daemon does not load libxml2 ($libs)"
db=$(dirname "$(command -v qrexec-daemon)")/../lib/qubes-orchestrator/qrexec-daemon-db
qvm-create -q -l blue -H -t lstpl dbvm
run "$db" known -- dbvm
is "$rc" 0 "qrexec-daemon-db knows a VM of qubes.xml"
run "$db" known -- nosuchvm
is "$rc/$out" "1/" "and says, without a word, that another is not one"
run "$db" firewall -- dbvm
fwfile=$(printf '%s' "$out" | sed -n 's/^0 0 \(\/.*\/firewall\.xml\)$/\1/p')
ok "$([ -n "$fwfile" ] && [ "$rc" = 0 ]; echo $?)" "it names a VM's firewall file, no rule expiring: $out"
qvm-firewall -a -e +3600 dbvm 192.0.2.7/32 tcp 80 2>/dev/null
at=$(qvm-firewall dbvm | sed -n 's/.*(expires at \([0-9]*\)).*/\1/p')
run "$db" firewall -- dbvm
is "$out" "0 $at $fwfile" "and the earliest expiry once a rule expires ($at)"
# Written tagged with it, for a running VM's daemon to read without XML
# (an attribute only root may set: without root the file has none).
if [ "$(id -u)" = 0 ]; then
    is "$("$HELPERS/getxattr" trusted.qubes.firewall-next "$fwfile")" "$at" \
       "a firewall file carries its rules' earliest expiry as an attribute"
else
    "$HELPERS/getxattr" trusted.qubes.firewall-next "$fwfile" >/dev/null 2>&1
    is "$?" 1 "not root: a firewall file is written without its expiry attribute"
fi
run "$db" firewall -- nosuchvm
is "$rc/$(printf '%s' "$out" | cut -c1-3)/$(printf '%s\n' "$out" | wc -l)" "0/-1 /1" \
   "a VM that is not one: one line, -1 and why ($out)"
like "$out" "nosuchvm" "naming it"
run "$db" firewall dbvm
is "$rc" 2 "anything else is a usage error (status 2)"
like "$out" "usage: qrexec-daemon-db known -- NAME" "naming the usage"
run qrexec-daemon --firewall-expiry 5 dbvm
like "$rc/$out" "2/qrexec-daemon: --firewall-expiry: the expiry of the rules in --firewall FILE" \
     "qrexec-daemon --firewall-expiry needs the file it is about"
run qrexec-daemon --firewall "$fwfile" --firewall-expiry soon dbvm
like "$rc/$out" "2/qrexec-daemon: --firewall-expiry: seconds since the epoch" "and a time"
run env QUBES_VMM_PLUGIN_DIR="$SCRATCH/nothing" qrexec-daemon --foreground dbvm
like "$rc/$out" "1/qrexec-daemon: error: cannot run $SCRATCH/nothing/qrexec-daemon-db (the database work of qrexec-daemon): No such file" \
     "without its helper it does not start, and says why"

# qrexec-daemon's line back to a starter that goes on (a DispVM's worker):
# a descriptor it was given, never one of its standard three.
run qrexec-daemon --ready-fd 2 work
is "$rc/$out" "2/qrexec-daemon: --ready-fd: a descriptor from 3 to 1023
Try 'qrexec-daemon --help' for more information." "qrexec-daemon --ready-fd refuses standard error"
run qrexec-daemon --ready-fd 9 work
is "$rc" 2 "and a descriptor it does not have"
like "$out" "--ready-fd: not an open descriptor" "naming why"
run qrexec-daemon --ready-fd 9 --foreground work 9>/dev/null
like "$out" "not with --foreground" "and --foreground with it"

done_testing
