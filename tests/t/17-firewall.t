#!/bin/sh
# Firewall rules: the C API (tests/unit/test_firewall.c), then qvm-firewall.
. "$(dirname "$0")/../lib.sh"
export QUBES_OFFLINE=1
"$UNIT/test_firewall" | sed -n '/^1\.\./!p' > "$SCRATCH/unit.tap"
unit_rc=$?
cat "$SCRATCH/unit.tap"
_tap_n=$(grep -c '^\(not \)\?ok ' "$SCRATCH/unit.tap")
_tap_failed=$(grep -c '^not ok ' "$SCRATCH/unit.tap")

qvm-create -q -s -l red work
f=$QUBES_BASE_DIR/appvms/work/firewall.xml
run qvm-firewall work
like "$out" "policy: allow; DNS: allow; ICMP: allow; update proxy: deny" "qvm-firewall lists the defaults"
like "$out" "no rules" "and no rules"
qvm-firewall -a work 10.0.0.0/8 tcp 443 && qvm-firewall -a work 192.0.2.7 any && qvm-firewall -P deny work
run qvm-firewall -l work
like "$out" "policy: deny" "--policy deny"
like "$out" "  1  10.0.0.0/8 tcp 443" "--add lists rule 1"
like "$out" "  2  192.0.2.7 any" "and rule 2"
grep -q '<rule address="10.0.0.0" proto="tcp" netmask="8" port="443"/>' "$f"
ok $? "firewall.xml in the VM's directory, in the original's format"
is "$(stat -c %a "$f")" 640 "mode 640: nobody but root changes a VM's rules"
qvm-firewall -d 1 work
is "$(grep -c '<rule ' "$f")" 1 "--del 1 removes the first rule"
before=$(cat "$f")
run qvm-firewall -a work '10.0.0.1;id' any
like "$out" "not an IPv4 address or host name" "a bad address is refused"
run qvm-firewall -a work example.org any
like "$rc/$out" "1/qvm-firewall: error: address \"example.org\": a host name; a rule takes an IPv4 address" \
     "a host name is refused (the rules could not be applied)"
run qvm-firewall -d 9 work
like "$out" "'work' has no rule 9 (it has 1)" "so is a rule number that does not exist"
run qvm-firewall -P sometimes work
is "$rc" 2 "and a bad policy is a usage error"
is "$(cat "$f")" "$before" "none of them changed the file"
run qvm-firewall nosuchvm
like "$out" "nosuchvm" "an unknown VM is named in the error"
now=$(date +%s)
qvm-firewall -a -e +600 work 192.0.2.7 any
at=$(sed -n 's/.*address="192.0.2.7".*expire="\([0-9]*\)".*/\1/p' "$f")
ok "$([ -n "$at" ] && [ "$at" -ge $((now + 600)) ] && [ "$at" -le $((now + 602)) ]; echo $?)" \
   "--expire +600 stores the time 600 s from now (expire=\"$at\", now $now)"
like "$(qvm-firewall work)" "192.0.2.7 any (expires at $at)" "and the listing shows it"
before=$(cat "$f")
run qvm-firewall -a -e $((now - 10)) work 192.0.2.8 any
like "$out" "that time has passed" "an expiry in the past is refused"
run qvm-firewall -e +60 work
like "$out" "--expire goes with --add" "--expire without --add is a usage error"
is "$(cat "$f")" "$before" "neither changed the file"
printf '<QubesFirewallRules policy="allow">\n  <rule address="192.0.2.9" expire="%s"/>\n</QubesFirewallRules>\n' $((now - 5)) > "$f"
qvm-firewall work | grep -q 192.0.2.9
ok "$([ $? = 1 ]; echo $?)" "a rule that has expired is not listed"
printf '<QubesFirewallRules policy="allow">\n  <rule address="1.1.1.1" port="99999"/>\n</QubesFirewallRules>\n' > "$f"
run qvm-firewall work
like "$out" "firewall.xml:2: rule: port=\"99999\"" "a bad file: file, line and problem"
rm -f "$f"

# A change waits for the qubes.xml write lock another process holds (a
# classic fcntl lock, as the original's tools take it, excludes ours).
perl -e 'use Fcntl; open(my $f, "+<", $ARGV[0]) or die;
         my $lk = pack("s s x4 q q i x4", F_WRLCK, 0, 0, 0, 0);
         fcntl($f, F_SETLKW, $lk) or die "fcntl: $!";
         print "locked\n"; $| = 1; sleep 2;' "$QUBES_BASE_DIR/qubes.xml" > "$SCRATCH/held" &
holder=$!
for i in $(seq 50); do [ -s "$SCRATCH/held" ] && break; sleep 0.05; done
t0=$(date +%s%N)
qvm-firewall -a work 1.2.3.4 any
t1=$(date +%s%N)
wait $holder
waited=$(( (t1 - t0) / 1000000 ))
ok "$([ "$waited" -ge 1000 ] && grep -q '1.2.3.4' "$f"; echo $?)" \
   "a change waits for the write lock another process holds, then lands (waited ${waited} ms)"
echo "1..$_tap_n"
[ "$_tap_failed" = 0 ]
