#!/bin/sh
# qvm-service: a VM's `services` dict in qubes.xml, listed and changed
# without the hypervisor; the original's text kept; names that could not
# reach the guest refused.
. "$(dirname "$0")/../lib.sh"
db=$QUBES_BASE_DIR/qubes.xml
svc() { qvm-prefs -g "$1" services; }
# The services="..." attribute of VM $1 as qubes.xml holds it.
attr() { grep "name=\"$1\"" "$db" | sed -n 's/.* services="\([^"]*\)".*/\1/p'; }

# A hypervisor address that counts connections: none may come.
sock=$SCRATCH/watch.sock
"$HELPERS/sockwatch" "$sock" > "$SCRATCH/watch.out" &
watch=$!
for i in $(seq 100); do grep -q listening "$SCRATCH/watch.out" 2>/dev/null && break; sleep 0.05; done
export QUBES_VMM_URI="qemu+unix:///system?socket=$sock"

QUBES_OFFLINE=1 qvm-create -q -l red -H work
run qvm-service work
is "$rc" 0 "qvm-service lists a VM's services (the default action)"
like "$out" "'work' has no services set" "and says when there are none"
is "$(svc work)" "{}" "a new VM's services are the empty dict"

run qvm-service -e work cups
is "$rc" 0 "-e enables a service"
is "$(svc work)" "{'cups': True}" "qvm-prefs reads it back as the original's dict"
is "$(attr work)" "{'cups': True}" "qubes.xml holds the Python literal"
qvm-service work -d ntpd
is "$(svc work)" "{'cups': True, 'ntpd': False}" "-d (after the VM name too) adds a disabled one"
qvm-service -e work my_svc.v2-x
is "$(svc work)" "{'cups': True, 'ntpd': False, 'my_svc.v2-x': True}" \
   "letters, digits, '_', '.' and '-' make a name; keys keep their order"
run qvm-service -l work
is "$out" "$(printf 'cups         on\nntpd         off\nmy_svc.v2-x  on')" "-l: each service, on or off"
qvm-service -d work cups
is "$(svc work)" "{'cups': False, 'ntpd': False, 'my_svc.v2-x': True}" "-d turns an enabled one off in place"
qvm-service --enable work ntpd
is "$(svc work)" "{'cups': False, 'ntpd': True, 'my_svc.v2-x': True}" "--enable turns it on again"
qvm-service -D work ntpd
is "$(svc work)" "{'cups': False, 'my_svc.v2-x': True}" "-D removes the key: the VM decides"
ino=$(stat -c %i "$db")
run qvm-service -D work ntpd
is "$rc/$(svc work)" "0/{'cups': False, 'my_svc.v2-x': True}" "-D of a key that is not there changes nothing"
qvm-service -e work my_svc.v2-x
is "$(stat -c %i "$db")" "$ino" "nor does -e of one already on: qubes.xml is not written"
qvm-service -e work late
ok "$([ "$(stat -c %i "$db")" != "$ino" ]; echo $?)" \
   "a change replaces qubes.xml by a new file (the atomic save)"
qvm-service --offline-mode -D work late
is "$(svc work)" "{'cups': False, 'my_svc.v2-x': True}" "--offline-mode works the same"
qvm-service -D work cups && qvm-service --default work my_svc.v2-x
is "$(svc work)/$(qvm-service work)" "{}/'work' has no services set: the VM decides about each" \
   "removing the last key leaves the empty dict"

# A change waits for the qubes.xml write lock another process holds (a
# classic fcntl lock, as the original's tools take it, excludes ours).
perl -e 'use Fcntl; open(my $f, "+<", $ARGV[0]) or die;
         my $lk = pack("s s x4 q q i x4", F_WRLCK, 0, 0, 0, 0);
         fcntl($f, F_SETLKW, $lk) or die "fcntl: $!";
         print "locked\n"; $| = 1; sleep 2;' "$db" > "$SCRATCH/held" &
holder=$!
for i in $(seq 50); do [ -s "$SCRATCH/held" ] && break; sleep 0.05; done
t0=$(date +%s%N)
qvm-service -e work waited
t1=$(date +%s%N)
wait $holder
waited=$(( (t1 - t0) / 1000000 ))
ok "$([ "$waited" -ge 1000 ] && [ "$(svc work)" = "{'waited': True}" ]; echo $?)" \
   "a change waits for the write lock another process holds, then lands (waited ${waited} ms)"
qvm-service -D work waited

# Names reach the guest as command-line words and file names.
qvm-service -e work keep
before=$(cat "$db")
for bad in '' '.hidden' '-e' 'a b' 'a,b' '!neg' 'x/y' '../x' 'a=b' "semi;colon" "q'uote" \
           "$(printf 'ctl\033[31m')" "$(printf 'x%.0s' $(seq 64))"; do
    run qvm-service -e -- work "$bad"
    case $rc/$out in
        1/*"service name"*) ;;
        *) ok 1 "-e '$bad' is refused with a message about the name"; diag "rc $rc: $out"; continue ;;
    esac
    run qvm-service -d -- work "$bad"
    [ "$rc" = 1 ] || { ok 1 "-d '$bad' is refused"; continue; }
done
ok 0 "-e and -d refuse empty, dotted, dashed, spaced, punctuated, control and 64-character names"
run qvm-service -e work "$(printf 'x%.0s' $(seq 63))"
is "$rc" 0 "a 63-character name is accepted"
qvm-service -D work "$(printf 'x%.0s' $(seq 63))"
run qvm-service -e work 'a b'
like "$out" "qvm-service: error: service name 'a b' has a character outside [A-Za-z0-9_.-]" \
     "the refusal names the name and the rule"
run qvm-service -e work "$(printf 'bad\033]0;x\007')"
ok "$(printf '%s' "$out" | grep -q "$(printf '\033')"; [ $? = 1 ]; echo $?)" \
   "a control character in a refused name reaches the terminal escaped"
run qvm-service -D work '../x'
like "$rc/$out" "1/qvm-service: error: service name '../x'" "-D of a bad name that is not there is refused"
is "$(cat "$db")" "$before" "no refusal changed qubes.xml"

# Bounded: qubes.services= on the kernel command line is at most 1024 bytes.
for i in $(seq 10 24); do qvm-service -e work "$(printf "s$i%.0s" $(seq 21))"; done
before=$(cat "$db")
run qvm-service -e work "$(printf 's25%.0s' $(seq 21))"
like "$rc/$out" "1/qvm-service: error: 'work': its services do not fit the kernel command line's 1024 bytes" \
     "a service that would make qubes.services= too long is refused"
is "$(cat "$db")" "$before" "and leaves qubes.xml as it was"
run qvm-service -d work keep
is "$rc" 0 "one that changes in place still goes (same length)"
run qvm-service -D work keep
is "$rc" 0 "and -D always may"

run qvm-service nosuchvm
like "$rc/$out" "1/qvm-service: error: A VM with the name 'nosuchvm' does not exist" "an unknown VM is named (-l)"
run qvm-service -e nosuchvm cups
like "$rc/$out" "1/qvm-service: error: A VM with the name 'nosuchvm' does not exist" "and (-e)"
run qvm-service -e work
is "$rc" 2 "-e without a service is a usage error"
run qvm-service -e -D work cups
is "$rc" 2 "so are two actions"
run qvm-service -e dom0 cups
like "$rc/$out" "1/qvm-service: error: dom0" "dom0 has no services to set"
run qvm-service --help
like "$rc/$out" "0/Usage: qvm-service [-l] NAME" "--help"
like "$(qvm-service --version)" "qvm-service (qubes-orchestrator" "--version"

# The original's file: its dicts and their text survive changes of other keys.
use_fixture
ino=$(stat -c %i "$db")
is "$(qvm-service netvm)" "$(printf 'ntpd            off\nmeminfo-writer  off')" "the R2 fixture's dict is listed"
is "$(stat -c %i "$db")" "$ino" "listing does not write qubes.xml"
others=$(grep -o 'services="[^"]*"' "$db" | sed '1,2d')
qvm-service -e netvm qubes-firewall
is "$(svc netvm)" "{'ntpd': False, 'meminfo-writer': False, 'qubes-firewall': True}" \
   "a new key joins the original's entries, which keep their order and values"
qvm-service -d fedora-20-x64 ntpd
is "$(svc fedora-20-x64)" "{ 'meminfo-writer': True, 'ntpd': False}" \
   "the original's spacing ({ 'meminfo-writer': True}) is kept"
qvm-service -D netvm ntpd
is "$(svc netvm)" "{'meminfo-writer': False, 'qubes-firewall': True}" "-D takes one key out, the rest stays"
qvm-service -D fedora-20-x64 meminfo-writer && qvm-service -D fedora-20-x64 ntpd
is "$(svc fedora-20-x64)" "{ }" "and the last one, leaving the original's brace"
is "$(grep -o 'services="[^"]*"' "$db" | sed '1,2d')" "$others" "every other VM's services are as they were"

# Keys and values the original could hold that a guest may not receive.
sed -i "s|services=\"{'meminfo-writer': True}\" maxmem=\"1535\" pcidevs=\"\[\]\" name=\"banking\"|services=\"{'meminfo-writer': True, 'odd key': 1, \&quot;it's\&quot;: None, 'x': 'yes'}\" maxmem=\"1535\" pcidevs=\"[]\" name=\"banking\"|" "$db"
is "$(svc banking)" "{'meminfo-writer': True, 'odd key': 1, \"it's\": None, 'x': 'yes'}" "(a database with odd keys)"
run qvm-service banking
like "$out" "odd key         on (value 1) (not passed to the VM: not a service name)" \
     "-l lists an odd key with its value, and says it does not reach the guest"
like "$out" "x               on (value 'yes')" "a value that is not a boolean shows as Python's truth"
qvm-service -d banking meminfo-writer
is "$(svc banking)" "{'meminfo-writer': False, 'odd key': 1, \"it's\": None, 'x': 'yes'}" \
   "a change keeps the odd keys and values as they were written"
qvm-service -D banking 'odd key'
is "$(svc banking)" "{'meminfo-writer': False, \"it's\": None, 'x': 'yes'}" \
   "-D removes a key that is no service name (a way to clean up)"

kill -TERM $watch; wait $watch
is "$(tail -n 1 "$SCRATCH/watch.out")" "0" "qvm-service never connected to the hypervisor"
done_testing
