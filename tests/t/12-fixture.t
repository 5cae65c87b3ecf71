#!/bin/sh
# The original's qubes.xml loads, lists and saves, keeping every attribute.
. "$(dirname "$0")/../lib.sh"
use_fixture
db=$QUBES_BASE_DIR/qubes.xml
dump() { "$HELPERS/xmldump" "$1"; }

# Every VM of the file, read independently of our loader.
dump "$db" > "$SCRATCH/before"
names=$(sed -n 's/^Qubes[A-Za-z]*\[\([^]]*\)\] name=.*/\1/p' "$SCRATCH/before" | sort)

run qvm-ls --offline-mode
is "$rc" 0 "qvm-ls loads the original's file"
listed=$(qvm-ls --raw-list | grep -v '^dom0$' | sort)
is "$listed" "$names" "qvm-ls --raw-list lists every VM of the file"

# Class, template and netvm of every VM, as the file says.
attr() {  # attr VM ATTR -> value from the independent dump
    sed -n "s/^[A-Za-z]*\[$1\] $2=//p" "$SCRATCH/before"
}
name_of_qid() {
    [ "$1" = none ] && { echo none; return; }
    sed -n "s/^[A-Za-z]*\[\([^]]*\)\] qid=$1\$/\1/p" "$SCRATCH/before"
}
bad=0
for vm in $names; do
    elem=$(grep "^[A-Za-z]*\[$vm\] qid=" "$SCRATCH/before" | sed 's/\[.*//')
    case $elem in
        QubesTemplateVm) want_type=TemplateVM ;; QubesTemplateHVm) want_type=TemplateHVM ;;
        QubesNetVm) want_type=NetVM ;; QubesProxyVm) want_type=ProxyVM ;;
        QubesAppVm) want_type=AppVM ;; QubesHVm) want_type=HVM ;;
        QubesDisposableVm) want_type=DisposableVM ;; *) want_type="?$elem" ;;
    esac
    got_type=$(qvm-prefs --offline-mode -g "$vm" type)
    [ "$got_type" = "$want_type" ] || { diag "$vm: type $got_type, want $want_type"; bad=1; }
    case $elem in QubesTemplateVm|QubesTemplateHVm) ;; *)
        want_tpl=$(name_of_qid "$(attr "$vm" template_qid)")
        got_tpl=$(qvm-prefs --offline-mode -g "$vm" template)
        [ "$got_tpl" = "$want_tpl" ] || { diag "$vm: template $got_tpl, want $want_tpl"; bad=1; }
    esac
    [ "$elem" = QubesNetVm ] && continue
    nq=$(attr "$vm" netvm_qid)
    want_net=$(name_of_qid "${nq:-none}")
    got_net=$(qvm-prefs --offline-mode -g "$vm" netvm | sed 's/ (default)$//')
    [ "$got_net" = "$want_net" ] || { diag "$vm: netvm $got_net, want $want_net"; bad=1; }
done
ok $bad "every VM has the class, template and netvm the file gives it"

run qvm-ls --offline-mode
line=$(echo "$out" | grep ' \[fedora-20-x64\] ')
like "$line" "Tpl" "qvm-ls shows the template as Tpl"
like "$(echo "$out" | grep ' test-testhvm ')" "HVM" "qvm-ls shows the HVM as HVM"
like "$(echo "$out" | grep ' untrusted ')" "test-testproxy" "qvm-ls shows a non-default netvm"
like "$(echo "$out" | grep ' banking ')" "*firewallvm" "qvm-ls marks the default netvm with *"

# One change, everything else kept, unknown attributes included.
run qvm-prefs --offline-mode -s banking memory 800
is "$rc" 0 "qvm-prefs -s saves the original's file"
dump "$db" > "$SCRATCH/after"
changed=$(diff "$SCRATCH/before" "$SCRATCH/after" | grep '^[<>]' | grep -v 'QubesAdminVm\[dom0\]')
want="< QubesAppVm[banking] memory=400
> QubesAppVm[banking] memory=800"
is "$changed" "$want" "the save changed banking's memory and nothing else"
n_before=$(grep -c ' backup_' "$SCRATCH/before")
n_after=$(grep -c ' backup_' "$SCRATCH/after")
ok "$([ "$n_before" -gt 0 ] && [ "$n_before" = "$n_after" ]; echo $?)" \
   "attributes the model does not know (backup_*) are kept ($n_after of $n_before)"
grep -q 'QubesAdminVm\[dom0\] qid=0' "$SCRATCH/after"
ok $? "dom0, missing from the file, is synthesised and saved"
ok "$(stat -c %a "$db" | grep -qx 660; echo $?)" "the saved file has mode 0660"

# Saving twice changes nothing more: the output is stable.
cp "$db" "$SCRATCH/first"
qvm-prefs --offline-mode -s banking memory 800 >/dev/null 2>&1
cmp -s "$db" "$SCRATCH/first"
ok $? "a second save of the same content writes the same bytes"

# Python-literal values: parsed, then written back the way the original did.
is "$(qvm-prefs --offline-mode -g netvm pcidevs)" "['02:00.0', '03:00.0']" "pcidevs read from the file"
qvm-prefs --offline-mode -s netvm pcidevs 02:00.0 04:00.1 >/dev/null 2>&1
is "$(sed -n 's/^QubesNetVm\[netvm\] pcidevs=//p' "$("$HELPERS/xmldump" "$db" > "$SCRATCH/d3"; echo "$SCRATCH/d3")")" \
   "['02:00.0', '04:00.1']" "pcidevs set from words is saved as a Python list literal"
is "$(sed -n 's/^QubesNetVm\[netvm\] services=//p' "$SCRATCH/d3")" \
   "{'ntpd': False, 'meminfo-writer': False}" "services keep their value and order"

done_testing
