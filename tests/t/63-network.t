#!/bin/sh
# Networking as isolation, end to end on real guests: an AppVM behind a
# ProxyVM behind a NetVM, all three guests. Starting the AppVM starts the
# chain; it reaches the test's outside world (192.0.2.1, inside the NetVM:
# ICMP, TCP 1234, the name test.example) through both; the host has no
# address on any VM network; a netvm with VMs behind it is not shut down
# without --force. Every packet stays between these guests.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../e2e.sh"
T=nw-tpl-$$ NET=nw-net-$$ PRX=nw-prx-$$ PRX2=nw-prx2-$$ A=nw-a-$$ B=nw-b-$$ C=nw-c-$$
cleanup() {
    destroy_ours
    rm -rf "$SCRATCH"
}
trap cleanup EXIT

qvm-create -q -l red --hvm-template -r "$GUEST/root.img" --kernel "$GUEST/kernel" $T
run qvm-create -l red --net -s -r "$GUEST/root.img" --kernel "$GUEST/kernel" $NET
is "$rc" 0 "qvm-create --net -s -r ... makes a bootable NetVM"
run qvm-create -l orange --proxy -s -r "$GUEST/root.img" --kernel "$GUEST/kernel" $PRX
is "$rc" 0 "and --proxy a ProxyVM"
qvm-prefs -s $PRX netvm $NET
qvm-create -q -l blue -H -t $T $A && qvm-prefs -s $A netvm $PRX
net_n=$(qvm-prefs -g $NET netid) prx_n=$(qvm-prefs -g $PRX netid)
a_qid=$(qvm-prefs -g $A qid) prx_qid=$(qvm-prefs -g $PRX qid)

run qvm-start $A
is "$rc" 0 "starting the AppVM succeeds"
[ "$rc" = 0 ] || diag "$(echo "$out" | tail -n 5)"
like "$out" "Starting $PRX, the netvm of $A, first" "it starts its ProxyVM first"
like "$out" "Starting $NET, the netvm of $PRX, first" "which starts its NetVM first"
is "$(state $NET) $(state $PRX) $(state $A)" "Running Running Running" "all three run"

is "$(qvm-run -p $A "ip -4 -o addr show eth0 | awk '{print \$4}'; ip route | sed -n 's/^default via //p' | cut -d' ' -f1")" \
   "$(printf '10.137.%d.%d/24\n10.137.%d.1' $prx_n $((a_qid + 2)) $prx_n)" \
   "the AppVM has its address on the ProxyVM's network, the ProxyVM as its gateway"
is "$(qvm-run -p $PRX "ip -4 -o addr show | awk '{print \$4}' | sort | tr '\n' ' '")" \
   "$(printf '10.137.%d.%d/24 10.137.%d.1/24 10.138.%d.1/24 127.0.0.1/8 ' $net_n $((prx_qid + 2)) $prx_n $prx_n)" \
   "the ProxyVM holds the gateways of its network and has its own address on the NetVM's"
is "$(qvm-run -p $A 'ping -c 1 -W 5 192.0.2.1 >/dev/null && echo reached')" "reached" \
   "the AppVM pings the outside world through the ProxyVM and the NetVM"
is "$(qvm-run -p $A 'nc -w 5 192.0.2.1 1234 </dev/null')" "outside world: $NET" \
   "and reaches its TCP port"
like "$(qvm-run -p $A 'nslookup test.example 2>&1')" "192.0.2.1" \
   "and resolves test.example through its gateway's DNS, relayed by the ProxyVM"
like "$(qvm-run -p $A 'nslookup no-such-name.example 2>&1; echo rc=$?')" "rc=1" \
   "an unknown name does not resolve"

# The firewall, each step applied to the running AppVM. probe prints what
# got through: ping by address, ping by name (DNS), TCP to port 1234.
probe() {  # probe [VM]: A by default
    qvm-run -p ${1:-$A} 'ping -c 1 -W 2 192.0.2.1 >/dev/null 2>&1 && echo ping
                   ping -c 1 -W 2 test.example >/dev/null 2>&1 && echo name
                   nc -w 3 192.0.2.1 1234 </dev/null 2>/dev/null | grep -q "^outside world" && echo tcp' |
        tr '\n' ' '
}
is "$(probe)" "ping name tcp " "with the default rules all three get through"
run qvm-firewall -P deny -D deny -i deny $A
like "$out" "in force in the running VM $A" "qvm-firewall applies a change to the running VM at once"
is "$(probe)" "" "deny all, DNS and ICMP denied: ping and TCP blocked"
qvm-firewall -i allow $A 2>/dev/null
is "$(probe)" "ping " "ICMP allowed: ping by address works, by name does not"
qvm-firewall -D allow $A 2>/dev/null
is "$(probe)" "ping name " "DNS allowed: by name too, TCP still blocked"
qvm-firewall -a $A 192.0.2.1/32 tcp 1234 2>/dev/null
is "$(probe)" "ping name tcp " "policy deny plus the rule 192.0.2.1/32 tcp 1234: TCP works"
qvm-firewall -P allow $A 2>/dev/null
is "$(probe)" "ping name " "policy allow plus the same rule: TCP blocked"
qvm-firewall -d 1 $A 2>/dev/null
is "$(probe)" "ping name tcp " "the rule removed: TCP works again"
# A rule that expires leaves the running VM by itself: its qrexec daemon
# installs the chains again at the expiry, no tool is called.
qvm-firewall -P deny -a -e +15 $A 192.0.2.1/32 tcp 1234 2>/dev/null
at=$(qvm-firewall $A | sed -n 's/.*(expires at \([0-9]*\)).*/\1/p')
is "$(probe)" "ping name tcp " "policy deny plus a rule that expires in 15 s: TCP works"
# The daemon learns it from the attribute the file was written with: no
# helper process, no XML.
like "$(cat "$QUBES_RUN_DIR/vms/$A/qrexec.log")" "the firewall rules changed: the first to expire does at $at" \
     "the VM's qrexec daemon read the new expiry from the file's tag"
while [ "$(date +%s)" -le "$((at + 1))" ]; do sleep 1; done
is "$(probe)" "ping name " "after its expiry TCP is blocked, without any tool called"
like "$(cat "$QUBES_RUN_DIR/vms/$A/qrexec.log")" "a firewall rule expired: the chains are installed again" \
     "the VM's qrexec daemon did it"
qvm-firewall -P allow $A 2>/dev/null

# The ProxyVM's own rules hold on its uplink for its own traffic; what it
# forwards for A keeps A's rules, and its DNS relay keeps working.
is "$(probe $PRX)" "ping name tcp " "the ProxyVM itself reaches the outside world with its default rules"
run qvm-firewall -P deny -D deny -i deny $PRX
like "$out" "in force in the running VM $PRX" "the ProxyVM's rules change while it runs"
is "$(probe $PRX)" "" "deny all: the ProxyVM's own ping and TCP are blocked"
is "$(probe)" "ping name tcp " "while A behind it keeps its own rules, DNS relayed"
qvm-firewall -P allow -D allow -i allow $PRX 2>/dev/null
is "$(probe $PRX)" "ping name tcp " "allowed again"

# The NetVM starts again under the running ProxyVM: it is told the way back
# to the ProxyVM's network again, and A reaches the outside world again.
qvm-kill $NET >/dev/null 2>&1
run qvm-start $NET
is "$rc" 0 "the NetVM starts again under the running ProxyVM"
like "$out" "$NET routes networks $prx_n through $PRX" "and learns the ProxyVM's network again"
# (The NetVM's first answers may lag its agent: up to three tries.)
for try in 1 2 3; do
    got=$(probe)
    [ "$got" = "ping name tcp " ] && break
    sleep 1
done
is "$got" "ping name tcp " "A reaches the outside world again"

# Two more AppVMs: B behind the same ProxyVM, C behind a second one.
qvm-create -q -l orange --proxy -s -m 160 -r "$GUEST/root.img" --kernel "$GUEST/kernel" $PRX2
qvm-prefs -s $PRX2 netvm $NET
qvm-create -q -l green -H -m 256 -t $T $B && qvm-prefs -s $B netvm $PRX
qvm-create -q -l green -H -m 256 -t $T $C && qvm-prefs -s $C netvm $PRX2
qvm-start -q $B && qvm-start -q $C
prx2_n=$(qvm-prefs -g $PRX2 netid)
ip_of() { echo "10.137.$1.$(($(qvm-prefs -g $2 qid) + 2))"; }
a_ip=$(ip_of $prx_n $A) b_ip=$(ip_of $prx_n $B) c_ip=$(ip_of $prx2_n $C)
reach() {  # reach VM ADDRESS: whether VM's ping gets an answer from ADDRESS
    qvm-run -p $1 "ping -c 1 -W 2 $2 >/dev/null 2>&1 && echo yes || echo no"
}
is "$(reach $B 192.0.2.1) $(reach $C 192.0.2.1)" "yes yes" "B and C reach the outside world"
is "$(reach $A $b_ip) $(reach $B $a_ip)" "no no" "A and B, behind one ProxyVM, do not reach each other"
is "$(reach $A $c_ip) $(reach $C $a_ip)" "no no" "nor A and C, behind two"
is "$(reach $A 10.137.$net_n.1)" "no" "nor does A reach the NetVM's side of the network behind it"

# Spoofing: A takes B's address, then another MAC; then its own back.
spoof_ip() {
    qvm-run -p $A "ip addr flush dev eth0; ip addr add $1/24 dev eth0
                   ip route add default via 10.137.$prx_n.1
                   ping -c 1 -W 2 192.0.2.1 >/dev/null 2>&1 && echo through || echo blocked"
}
is "$(spoof_ip $b_ip)" "blocked" "A with B's address gets nothing through"
is "$(spoof_ip $a_ip)" "through" "A with its own address again does"
a_mac=$(qvm-run -p $A 'cat /sys/class/net/eth0/address')
spoof_mac() {
    qvm-run -p $A "ip link set eth0 down; ip link set eth0 address $1; ip link set eth0 up
                   ip route add default via 10.137.$prx_n.1 2>/dev/null
                   ping -c 1 -W 3 192.0.2.1 >/dev/null 2>&1 && echo through || echo blocked"
}
is "$(spoof_mac 00:16:3e:5e:6c:77)" "blocked" "A with another MAC gets nothing through"
is "$(spoof_mac $a_mac)" "through" "A with its own MAC again does"
qvm-kill $B >/dev/null 2>&1; qvm-kill $C >/dev/null 2>&1

# DispVMs: the savefile is made on the ProxyVM's network. A DispVM asked for
# by A gets A's rules (not T-dvm's), and A's dispvm_netvm.
qubes-prefs -s default-netvm $PRX
run qvm-create-default-dvm $T
is "$rc" 0 "a DispVM savefile is made on the ProxyVM's network"
[ "$rc" = 0 ] || diag "$(echo "$out" | tail -n 3)"
qvm-firewall -P deny -D deny -i allow $A 2>/dev/null
PROBE='r=""; ping -c 1 -W 2 192.0.2.1 >/dev/null 2>&1 && r="${r}ping "
nc -w 3 192.0.2.1 1234 </dev/null 2>/dev/null | grep -q "^outside world" && r="${r}tcp "
echo "[$r]"'
mkfifo "$SCRATCH/dout" "$SCRATCH/dgate"
({ printf '%s\n' "uname -n; ip -4 -o addr show eth0 | awk '{print \$4}'" "$PROBE" "read g || true" "$PROBE"
   cat "$SCRATCH/dgate"; } |
 qfile-daemon-dvm -q -t $T qubes.VMShell $A DEFAULT > "$SCRATCH/dout" 2>"$SCRATCH/derr") &
exec 4>"$SCRATCH/dgate" 5<"$SCRATCH/dout"
read -r dname <&5; read -r daddr <&5; read -r before <&5
like "$daddr" "10.138.$prx_n." "a DispVM A asks for is on A's network ($dname, $daddr)"
is "$before" "[ping ]" "and gets A's rules: ICMP allowed, TCP denied (T-dvm's would allow TCP)"
run qvm-firewall -P allow $dname
like "$out" "in force in the running VM $dname" "changing the DispVM's rules"
exec 4>&-
read -r after <&5
exec 5<&-
wait_jobs 120 "a DispVM of A"
is "$after" "[ping tcp ]" "applies to the DispVM at once"
like "$(qvm-firewall -l $A)" "deny" "and leaves A's rules as they were"
like "$(qvm-firewall -l $T-dvm)" "allow" "and T-dvm's"

# dispvm_netvm: none gives A's DispVMs no network; another netvm, its network.
qvm-prefs -s $A dispvm_netvm none
out=$(echo "ip -4 -o addr show eth0 | wc -l; ping -c 1 -W 2 192.0.2.1 >/dev/null 2>&1 && echo reached || echo unreachable" |
      qfile-daemon-dvm -q -t $T qubes.VMShell $A DEFAULT 2>&1)
is "$(echo $out)" "0 unreachable" "dispvm_netvm none: A's DispVMs have no address and reach nothing"
qvm-prefs -s $A dispvm_netvm $PRX2
qvm-start -q $PRX2 2>/dev/null
qvm-firewall -P allow -i allow $A 2>/dev/null
out=$(echo "ip -4 -o addr show eth0 | awk '{print \$4}'; ping -c 1 -W 3 192.0.2.1 >/dev/null 2>&1 && echo reached || echo unreachable" |
      qfile-daemon-dvm -q -t $T qubes.VMShell $A DEFAULT 2>&1)
like "$(echo $out)" "10.138.$prx2_n." "dispvm_netvm $PRX2: A's DispVMs are on its network"
like "$(echo $out)" "reached" "and reach the outside world through it"
is "$(settled)" "0/0/0" "no DispVM is left"
qvm-prefs -s $A dispvm_netvm default
qvm-kill $PRX2 >/dev/null 2>&1

# dom0 is on no VM network.
addrs=""
for br in qubes-net$net_n qubes-net$prx_n; do
    addrs="$addrs$(ip -o addr show dev $br 2>&1)"
done
is "$addrs" "" "the host has no address (IPv4 or IPv6) on either VM network"
is "$(virsh -c "$QUBES_VMM_URI" net-dumpxml qubes-net$prx_n | grep -c -E '<(ip|forward)[ >]')" "0" \
   "the networks are libvirt's, isolated: no forwarding, no host address"
is "$(qvm-run -p $A "ping -c 1 -W 2 10.137.$prx_n.1 >/dev/null && echo gw; ip neigh | grep -c -v 00:16:3e:5e:6d")" \
   "$(printf 'gw\n0')" "the only neighbour the AppVM sees is its gateway"

# A netvm with a VM behind it stays up unless told.
run qvm-shutdown $PRX
ok "$([ "$rc" != 0 ]; echo $?)" "qvm-shutdown refuses a ProxyVM with a running VM behind it"
like "$out" "netvm of running VMs ($A)" "naming the VM"
is "$(state $PRX)" "Running" "which still runs"
run qvm-shutdown -q $A
is "$rc" 0 "once the AppVM is down"
run qvm-shutdown -q $PRX
is "$rc" 0 "the ProxyVM shuts down"
qvm-start -q $A
run qvm-shutdown -q --force $PRX
is "$rc" 0 "--force shuts a netvm down with VMs behind it"
qvm-kill $A >/dev/null 2>&1

done_testing
