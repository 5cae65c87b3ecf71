#!/bin/sh
# Every rule of qvm-prefs -s as the original checked it (REFERENCE section
# 11), from the reviewed table tests/prefs/rules.tsv: the value given,
# accepted or refused (with its message), the value read back. The VMs are
# those of the R2 fixture and two the tools make; no hypervisor is needed.
. "$(dirname "$0")/../lib.sh"
export QUBES_OFFLINE=1
table=$top/tests/prefs/rules.tsv
db=$QUBES_BASE_DIR/qubes.xml
use_fixture
qvm-create -q -l red --hvm-template thvm && qvm-create -q -l blue -H -t thvm hkid
ok $? "a TemplateHVM and an HVM based on it beside the R2 fixture"

# The host's limits, found the way the tool must find them: MemTotal in
# MiB, and the online CPUs (sysconf's count, which getconf prints; nproc
# would count only the CPUs this process may run on).
MEM=$(awk '$1 == "MemTotal:" { print int($2 / 1024) }' /proc/meminfo)
CPUS=$(getconf _NPROCESSORS_ONLN)
diag "this host: $MEM MiB, $CPUS online CPUs"

expand() {
    printf '%s' "$1" | sed -e "s/{MEM+1}/$((MEM + 1))/g" -e "s/{MEM}/$MEM/g" \
        -e "s/{CPUS+1}/$((CPUS + 1))/g" -e "s/{CPUS\*10}/$((CPUS * 10))/g" \
        -e "s/{CPUS}/$CPUS/g" -e 's/{EMPTY}//g'
}

vm_of() {  # the table's class -> the VM it means
    case $1 in
        AdminVM) echo dom0 ;;
        TemplateVM) echo test-template-clone ;;
        TemplateVM/rpm) echo fedora-20-x64 ;;
        TemplateHVM) echo thvm ;;
        NetVM) echo netvm ;;
        ProxyVM) echo test-testproxy ;;
        AppVM) echo banking ;;
        AppVM/standalone) echo test-standalonevm ;;
        HVM) echo test-testhvm ;;
        HVM/child) echo hkid ;;
        DisposableVM) echo disp50 ;;
        *) echo "no-such-class-$1" ;;
    esac
}

bad=0
for c in TemplateVM TemplateVM/rpm TemplateHVM NetVM ProxyVM AppVM AppVM/standalone HVM \
         HVM/child DisposableVM; do
    t=$(qvm-prefs -g "$(vm_of $c)" type 2>&1)
    [ "$t" = "${c%%/*}" ] || { diag "$c: '$(vm_of $c)' is a $t"; bad=1; }
done
ok $bad "each class of the table names a VM of that class"

# -- the table, line by line ("--": a value may begin with '-')
rows=0
while IFS='	' read -r cls prop value result expect; do
    case $cls in ''|'#'*) continue ;; esac
    rows=$((rows + 1))
    vm=$(vm_of "$cls")
    value=$(expand "$value")
    expect=$(expand "$expect")
    what="$cls ($vm) $prop '$value'"
    case $result in
    ok)
        qvm-prefs -s -- "$vm" "$prop" "$value" >"$SCRATCH/out" 2>"$SCRATCH/err" </dev/null
        rc=$?
        got=$(qvm-prefs -g "$vm" "$prop" 2>&1 </dev/null)
        if [ "$rc" -eq 0 ] && [ ! -s "$SCRATCH/err" ] && [ "$got" = "$expect" ]; then
            ok 0 "$what: accepted, reads back '$expect'"
        else
            ok 1 "$what: accepted, reads back '$expect'"
            diag "exit $rc, read back '$got'"
            sed 's/^/#   stderr: /' "$SCRATCH/err"
        fi
        ;;
    refused)
        before_db=$(sha256sum < "$db")
        before=$(qvm-prefs -g "$vm" "$prop" 2>&1 </dev/null)
        qvm-prefs -s -- "$vm" "$prop" "$value" >"$SCRATCH/out" 2>"$SCRATCH/err" </dev/null
        rc=$?
        after=$(qvm-prefs -g "$vm" "$prop" 2>&1 </dev/null)
        msg=$(cat "$SCRATCH/err")
        s=0
        [ "$rc" -eq 1 ] || s=1
        [ "$(wc -l < "$SCRATCH/err")" -eq 1 ] || s=1
        case $msg in "qvm-prefs: error: "*"$expect"*) ;; *) s=1 ;; esac
        [ "$(sha256sum < "$db")" = "$before_db" ] || s=1
        [ "$before" = "$after" ] || s=1
        ok $s "$what: refused ($expect)"
        [ $s -eq 0 ] || diag "exit $rc; read back '$before' -> '$after'; stderr: $msg"
        ;;
    read)
        is "$(qvm-prefs -g "$vm" "$prop" 2>&1 </dev/null)" "$expect" "$what: reads '$expect'"
        ;;
    *)
        ok 1 "$what: the table's result '$result' is none of ok, refused, read"
        ;;
    esac
done < "$table"
ok "$([ "$rows" -ge 150 ]; echo $?)" "the table was read ($rows lines)"

# -- what the table cannot say
dump() { "$HELPERS/xmldump" "$db" | sed -n "s/^[A-Za-z]*\[$1\] $2=//p"; }

qvm-prefs -s banking kernelopts 'quiet' && qvm-prefs -s banking kernelopts default
is "$(dump banking uses_default_kernelopts)/$(dump banking kernelopts)" "True/nopat" \
   "kernelopts default: uses_default_kernelopts True, and kernelopts the default itself"
qvm-prefs -s banking debug oN
is "$(dump banking debug)" "True" "a boolean is saved as True or False, whatever its spelling"

# Host limits are read from the host, not asked of the hypervisor: outside
# offline mode, with no hypervisor to answer (lib.sh), the same rules hold.
run env -u QUBES_OFFLINE qvm-prefs -s banking memory $((MEM + 1))
like "$out" "memory: $((MEM + 1)) MiB is more than this host has ($MEM MiB" \
     "memory above the host's is refused without a hypervisor"
run env -u QUBES_OFFLINE qvm-prefs -s banking vcpus $((CPUS + 1))
like "$out" "vcpus: $((CPUS + 1)) is more than this host has ($CPUS online CPUs)" \
     "and so are more vCPUs than the host has"
run env -u QUBES_OFFLINE qvm-prefs -s banking memory 512
is "$rc/$(qvm-prefs -g banking memory)" "0/512" "and memory within them is taken, with no hypervisor"

# A ProxyVM that is the default firewall netvm: its default netvm is itself.
qubes-prefs -s default-fw-netvm test-testproxy
run qvm-prefs -s test-testproxy netvm default
like "$out" "netvm: the default netvm of a ProxyVM is 'test-testproxy' itself" \
     "netvm default is refused when it is the VM itself"
is "$(qvm-prefs -g test-testproxy netvm)" "netvm (default)" "and the netvm stays"
qubes-prefs -s default-fw-netvm netvm

# A running VM's PCI devices do not change. In offline mode the hypervisor
# cannot tell: the VM's qrexec-daemon, which lives as long as it, holds its
# lock in the run directory.
lock=$QUBES_RUN_DIR/vms/netvm/qrexec.lock
mkdir -p "$QUBES_RUN_DIR/vms/netvm"
(exec 9>"$lock" && flock 9 && : > "$SCRATCH/locked" && exec sleep 60) &
holder=$!
for i in $(seq 100); do [ -e "$SCRATCH/locked" ] && break; sleep 0.05; done
run qvm-prefs -s netvm pcidevs 02:00.0
like "$out" "Cannot change the PCI devices of a running VM ('netvm' has a qrexec-daemon" \
     "pcidevs of a VM whose qrexec-daemon runs are refused, offline"
kill "$holder"
wait "$holder" 2>/dev/null
run qvm-prefs -s netvm pcidevs 02:00.0
is "$rc/$(qvm-prefs -g netvm pcidevs)" "0/['02:00.0']" "and taken once it has stopped"

done_testing
