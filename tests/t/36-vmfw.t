#!/bin/sh
# The host side of a VM's network interface (orchestrator/vmfw.h). First
# the scripts for a few VMs against the reviewed files in tests/vmfw/, and
# nft's own check of them. Then, as root with nft, scripts applied to a
# testbed of network namespaces: a bridge with no address, the gateway
# (10.137.9.1; the outside world 192.0.2.1 with a TCP service on 1234; DNS
# on 53) and two VMs; the firewall of a live VM changed step by step as the
# original's network tests change it; VMs that reach each other, pretend
# to be another or talk to the host get nothing through. Every packet stays
# inside the namespaces made here, which go at exit.
. "$(dirname "$0")/../lib.sh"

skip() {
    _tap_n=$((_tap_n + 1))
    echo "ok $_tap_n # skip $*"
}

# The scripts, compared with the reviewed ones (numbered as this file's).
mkdir -p "$SCRATCH/out"
"$UNIT/test_vmfw" "$top/tests/vmfw" "$SCRATCH/out" > "$SCRATCH/unit.out" 2>&1
unit_rc=$?
sed -n '/^1\.\./!p' "$SCRATCH/unit.out"
_tap_n=$(grep -c '^\(not \)\?ok ' "$SCRATCH/unit.out")
_tap_failed=$(grep -c '^not ok ' "$SCRATCH/unit.out")
[ "$unit_rc" = 0 ] || [ "$_tap_failed" != 0 ] || ok 1 "test_vmfw exits $unit_rc with no failure listed"
if [ "$_tap_failed" != 0 ]; then
    for f in "$SCRATCH"/out/*.nft; do
        diff -u "$top/tests/vmfw/${f##*/}" "$f" | sed 's/^/# /'
    done
fi

# nft for the checks of our own; the helper applies its scripts through
# libnftables, as the tools do, unless the caller set QUBES_NFT.
NFT=${QUBES_NFT:-}
for p in /usr/sbin/nft /sbin/nft; do
    [ -z "$NFT" ] && [ -x "$p" ] && NFT=$p
done
HELPER=$HELPERS/vmfw-apply

# nft's own check, each script alone and then in a row, in a namespace of
# our own (root is not needed where user namespaces are allowed).
if [ -z "$NFT" ]; then
    skip "no nft (apt-get install nftables)"
elif ! unshare -rn true 2>/dev/null; then
    skip "cannot make a network namespace here (unshare -rn)"
else
    for f in "$top"/tests/vmfw/*.nft; do
        run unshare -rn "$NFT" -c -f "$f"
        is "$rc" 0 "nft -c accepts tests/vmfw/${f##*/}"
        [ "$rc" = 0 ] || diag "$out"
    done
    d=$top/tests/vmfw
    run unshare -rn sh -c "'$NFT' -f '$d/appvm-deny.nft' && '$NFT' -f '$d/dispvm-allow.nft' &&
        '$NFT' -f '$d/appvm-deny.nft' && '$NFT' -f '$d/remove.nft' && '$NFT' -f '$d/remove.nft' &&
        '$NFT' list ruleset"
    is "$rc" 0 "applied in a row: installed, installed again, removed, removed again"
    case "$out" in
        *qvm1*) ok 1 "and the removed VM leaves no trace"; diag "$out" ;;
        *qdisp12*) ok 0 "and the removed VM leaves no trace, the other stays" ;;
        *) ok 1 "and the other VM stays"; diag "$out" ;;
    esac
fi

why=""
[ "$(id -u)" = 0 ] || why="not root"
[ -n "$why" ] || [ -n "$NFT" ] || why="no nft"
[ -n "$why" ] || ip netns list >/dev/null 2>&1 || why="no ip netns"
[ -n "$why" ] || perl -MNet::Ping -MIO::Socket::INET -e 1 2>/dev/null || why="no Net::Ping"
[ -n "$why" ] || [ -x "$HELPER" ] || why="no $HELPER"
if [ -n "$why" ]; then
    skip "the namespace testbed: $why"
    done_testing
    exit
fi

# The testbed. Names carry our pid: nothing here meets anything else.
P=qfw$$
H=${P}h GW=${P}gw V1=${P}v1 V2=${P}v2
BR=qubes-net9
BRMAC=02:00:00:00:00:09 GWMAC=00:16:3e:5e:6d:09 V1MAC=00:16:3e:5e:6c:01 V2MAC=00:16:3e:5e:6c:02 NEWMAC=00:16:3e:5e:6c:07
GWIP=10.137.9.1 DISPGW=10.138.9.1 V1IP=10.137.9.3 V2IP=10.137.9.4
cleanup() {
    for ns in $V1 $V2 $GW $H; do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            kill "$pid" 2>/dev/null
        done
        ip netns del "$ns" 2>/dev/null
    done
    rm -rf "$SCRATCH"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

nsx() {
    ns=$1
    shift
    ip netns exec "$ns" "$@"
}

# probe NS ping ADDR [FROM] | tcp ADDR PORT [FROM] | udp ADDR PORT: exits 0
# when answered, 1 when not (and 3 when the probe itself fails).
# probe NS serve: TCP 1234 and 53 ("hi"), UDP 53 (echo).
# probe NS raw HEX: one Ethernet frame out of eth0.
cat > "$SCRATCH/probe.pl" <<'EOF'
use strict;
use warnings;
use IO::Socket::INET;
use Net::Ping;
$SIG{__DIE__} = sub { return if $^S; print STDERR @_; exit 3 };
my $mode = shift;
my $answer = '';
sub wait_for { my $code = shift; eval { local $SIG{ALRM} = sub { die "timeout\n" }; alarm 1; $code->(); alarm 0 }; }
if ($mode eq 'ping') {
    my $p = Net::Ping->new('icmp', 1);
    $p->bind($ARGV[1]) if $ARGV[1];
    exit($p->ping($ARGV[0]) ? 0 : 1);
} elsif ($mode eq 'tcp') {
    my $s = IO::Socket::INET->new(PeerAddr => $ARGV[0], PeerPort => $ARGV[1], Proto => 'tcp', Timeout => 1,
                                  $ARGV[2] ? (LocalAddr => $ARGV[2]) : ()) or exit 1;
    wait_for(sub { $answer = <$s> // '' });
    exit($answer =~ /^hi/ ? 0 : 1);
} elsif ($mode eq 'udp') {
    my $s = IO::Socket::INET->new(PeerAddr => $ARGV[0], PeerPort => $ARGV[1], Proto => 'udp') or die "udp: $!";
    $s->send("ping\n");
    wait_for(sub { $s->recv($answer, 100) });
    exit($answer =~ /^ping/ ? 0 : 1);
} elsif ($mode eq 'serve') {
    my @tcp = map {
        IO::Socket::INET->new(LocalAddr => '0.0.0.0', LocalPort => $_, Proto => 'tcp', Listen => 8, ReuseAddr => 1)
            or die "tcp $_: $!"
    } (1234, 53);
    my $udp = IO::Socket::INET->new(LocalAddr => '0.0.0.0', LocalPort => 53, Proto => 'udp') or die "udp: $!";
    require IO::Select;
    my $sel = IO::Select->new(@tcp, $udp);
    open my $ready, '>', $ARGV[0] or die "$ARGV[0]: $!";
    close $ready;
    while (1) {
        for my $r ($sel->can_read) {
            if ($r == $udp) {
                my $peer = $udp->recv(my $buf, 100);
                $udp->send($buf, 0, $peer) if defined $peer;
            } elsif (my $c = $r->accept) {
                print $c "hi\n";
                close $c;
            }
        }
    }
} elsif ($mode eq 'raw') {
    my $frame = pack('H*', $ARGV[0] =~ s/[^0-9a-fA-F]//gr);
    socket(my $s, 17, 3, 0) or die "socket: $!";    # AF_PACKET, SOCK_RAW
    open my $f, '<', '/sys/class/net/eth0/ifindex' or die "eth0: $!";
    chomp(my $index = <$f>);
    send($s, $frame, 0, pack('S n i S C C a8', 17, 3, $index, 1, 0, 6, substr($frame, 0, 6)))
        or die "send: $!";
}
EOF
probe() {
    ns=$1
    shift
    nsx "$ns" perl "$SCRATCH/probe.pl" "$@"
}
reaches() {  # reaches NAME NS PROBE...
    name=$1
    shift
    probe "$@"
    ok $? "$name"
}
blocked() {  # blocked NAME NS PROBE...: no answer (and the probe worked)
    name=$1
    shift
    probe "$@"
    is "$?" 1 "$name"
}

setup() {
    for ns in $H $GW $V1 $V2; do
        ip netns add "$ns" && ip -n "$ns" link set lo up || return 1
    done
    ip -n $H link add $BR address $BRMAC type bridge && ip -n $H link set $BR up || return 1
    # The host's side of the bridge: no IPv6 chatter of its own.
    nsx $H sysctl -qw net.ipv6.conf.$BR.disable_ipv6=1
    for spec in $GW:qnet9:$GWMAC $V1:qvm1:$V1MAC $V2:qvm2:$V2MAC; do
        ns=${spec%%:*} rest=${spec#*:}
        port=${rest%%:*} mac=${rest#*:}
        ip -n $H link add "$port" type veth peer name eth0 netns "$ns" &&
            ip -n $H link set "$port" master $BR up &&
            ip -n "$ns" link set eth0 address "$mac" up || return 1
    done
    ip -n $GW addr add $GWIP/24 dev eth0 && ip -n $GW addr add 192.0.2.1/32 dev lo &&
        nsx $GW sysctl -qw net.ipv4.ip_forward=1 &&
        ip -n $V1 addr add $V1IP/24 dev eth0 && ip -n $V1 route add default via $GWIP &&
        ip -n $V2 addr add $V2IP/24 dev eth0 && ip -n $V2 route add default via $GWIP || return 1
    # What the gateway receives from vm1's MAC, and from the one it takes later.
    nsx $GW "$NFT" -f - <<EOF || return 1
table netdev watch {
	counter vm1mac { }
	counter newmac { }
	counter tagged { }
	counter sixes { }
	counter fragments { }
	chain ingress {
		type filter hook ingress device eth0 priority 0;
		ether saddr $V1MAC counter name vm1mac
		ether saddr $NEWMAC counter name newmac
		ether saddr $V1MAC vlan id 5 counter name tagged
		ether saddr $V1MAC ip6 nexthdr udp udp dport 9 counter name sixes
		ether saddr $V1MAC ip frag-off & 0x3fff != 0 counter name fragments
	}
}
EOF
    # What vm1 receives from the host.
    nsx $V1 "$NFT" -f - <<EOF || return 1
table netdev watch {
	counter fromhost { }
	chain ingress {
		type filter hook ingress device eth0 priority 0;
		ether saddr $BRMAC counter name fromhost
	}
}
EOF
    # Not jobs of this shell: the namespaces' pids are killed at exit.
    for ns in $GW $V1 $V2; do
        (probe $ns serve "$SCRATCH/ready.$ns" >/dev/null 2>"$SCRATCH/serve.$ns" &)
    done
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        [ -e "$SCRATCH/ready.$GW" ] && [ -e "$SCRATCH/ready.$V1" ] && [ -e "$SCRATCH/ready.$V2" ] &&
            return 0
        sleep 0.2
    done
    return 1
}
setup
ok $? "the testbed: a bridge in $H, the gateway and two VMs, a server on each"
received() {  # received COUNTER [NS]: packets counted (on the gateway)
    nsx "${2:-$GW}" "$NFT" list counter netdev watch "$1" | awk '/packets/ {print $2}'
}
gw_port() {  # the port the bridge has learnt the gateway's MAC on
    nsx $H bridge fdb show br $BR | awk -v m=$GWMAC 'tolower($1) == m && $2 == "dev" {print $3; exit}'
}
# gw_port_after_lie: vm1 sends a frame from the gateway's MAC; the port the
# bridge then has the gateway on, watched for half a second (the bridge
# learns in a softirq that a busy machine may run late). The gateway may
# speak on its own in between and take its MAC back: up to three tries,
# each of which must see vm1's port for the answer to be qvm1.
gw_port_after_lie() {
    for try in 1 2 3; do
        probe $V1 raw "$FROM_GW_FRAME"
        for i in 1 2 3 4 5 6 7 8 9 10; do
            port=$(gw_port)
            [ "$port" = qvm1 ] && { echo qvm1; return; }
            sleep 0.05
        done
    done
    echo "$port"
}
ipsum() {  # the IPv4 header checksum of HEX
    perl -e 'my $s = 0; $s += $_ for unpack "n*", pack "H*", $ARGV[0];
             $s = ($s & 0xffff) + ($s >> 16) while $s >> 16; printf "%04x", ~$s & 0xffff' "$1"
}
hexip() {
    printf '%02x' $(echo "$1" | tr . ' ')
}
# Frames vm1 puts together itself: an ICMP echo to the gateway in a VLAN
# tag; an IPv6 packet; the first fragment of a UDP datagram to 192.0.2.1;
# from the gateway's MAC, a TCP reset to 192.0.2.1 that vm1 could send from
# its own (and that nobody answers: an answer from the gateway would put
# its MAC back in place); an ARP request saying vm2's address is vm1's MAC.
ip4="45000054000100004001"
ip4=$ip4$(ipsum "${ip4}0000$(hexip $V1IP)$(hexip $GWIP)")$(hexip $V1IP)$(hexip $GWIP)
echo_req="0800f7fe00010000$(printf '%0112d' 0)"
mac() { echo "$1" | tr -d :; }
VLAN_FRAME="$(mac $GWMAC)$(mac $V1MAC)81000005 0800$ip4$echo_req"
IPV6_FRAME="$(mac $GWMAC)$(mac $V1MAC)86dd 6000000000081101 fe800000000000000216 3efffe5e6c01 ff020000000000000000000000000001 0009000900080000"
rst="45000028000100004006"
rst=$rst$(ipsum "${rst}0000$(hexip $V1IP)$(hexip 192.0.2.1)")$(hexip $V1IP)$(hexip 192.0.2.1)
rst="${rst}000104d2000000000000000050040000 00000000"
FROM_GW_FRAME="$(mac $GWMAC)$(mac $GWMAC)0800$rst$(printf '%012d' 0)"
frag="4500001c00012000ff11"
frag=$frag$(ipsum "${frag}0000$(hexip $V1IP)$(hexip 192.0.2.1)")$(hexip $V1IP)$(hexip 192.0.2.1)
FRAGMENT="$(mac $GWMAC)$(mac $V1MAC)0800${frag}0009000900100000$(printf '%036d' 0)"
ARP_LIE="ffffffffffff$(mac $V1MAC)0806 0001080006040001 $(mac $V1MAC)$(hexip $V2IP) 000000000000$(hexip $GWIP)$(printf '%036d' 0)"
vm2_on_gw() {  # the MAC the gateway has for vm2's address, after vm1's lie
    ip -n $GW neigh flush dev eth0
    probe $V1 raw "$ARP_LIE"
    ip -n $GW neigh show $V2IP dev eth0 | awk '{print $3}'
}

# Without the table everything gets through: each check below can fail.
reaches "without the table: vm1 pings 192.0.2.1 through the gateway" $V1 ping 192.0.2.1
reaches "reaches 192.0.2.1:1234" $V1 tcp 192.0.2.1 1234
reaches "the gateway's DNS port (UDP)" $V1 udp $GWIP 53
reaches "pings vm2" $V1 ping $V2IP
reaches "and reaches vm2's TCP 1234" $V1 tcp $V2IP 1234
reaches "the outside world (192.0.2.1) reaches vm1's TCP 1234" $GW tcp $V1IP 1234 192.0.2.1
reaches "and pings it" $GW ping $V1IP 192.0.2.1
probe $V1 raw "$VLAN_FRAME" && probe $V1 raw "$IPV6_FRAME" && probe $V1 raw "$FRAGMENT"
is "$(received tagged) $(received sixes) $(received fragments)" "1 1 1" \
   "a VLAN-tagged frame, an IPv6 packet and a fragment from vm1 reach the gateway"
is "$(vm2_on_gw)" $V1MAC "vm1's ARP lie about vm2's address takes the gateway in"
ip -n $GW neigh flush dev eth0
is "$(gw_port_after_lie)" qvm1 "a frame from vm1 with the gateway's MAC moves the gateway to vm1's port"
probe $GW ping $V1IP >/dev/null
is "$(gw_port)" qnet9 "(until the gateway speaks again)"
host_address() {  # the host on the bridge as 10.138.9.1, vm1 on its link
    if [ "$1" = add ]; then
        ip -n $H addr add $DISPGW/24 dev $BR && ip -n $H route add $V1IP dev $BR &&
            ip -n $V1 route add $DISPGW dev eth0
    else
        ip -n $V1 route del $DISPGW dev eth0 && ip -n $H addr del $DISPGW/24 dev $BR
    fi
}
host_address add
reaches "the host, given an address on the bridge, answers vm1" $V1 ping $DISPGW
n=$(received fromhost $V1)
reaches "and reaches vm1" $H ping $V1IP
[ "$(received fromhost $V1)" -gt "$n" ]
ok $? "(vm1 counts what the host sends it)"
host_address del

# vm1's firewall, step by step; vm2 keeps the defaults (allow all).
apply() {  # apply NAME ARGS...: vmfw-apply in the bridge's namespace
    name=$1
    shift
    run nsx $H "$HELPER" "$@"
    is "$rc" 0 "$name"
    [ "$rc" = 0 ] || diag "$out"
}
vm1() {  # vm1 NAME RULES-XML [OPTIONS]: vm1's firewall.xml, applied
    name=$1
    printf '%s\n' "$2" > "$SCRATCH/vm1.xml"
    shift 2
    apply "$name" -f "$SCRATCH/vm1.xml" "$@" qvm1 $V1MAC $V1IP $GWMAC $GWIP $DISPGW
}
apply "vm2: the defaults" qvm2 $V2MAC $V2IP $GWMAC $GWIP $DISPGW
vm1 "deny all, DNS and ICMP denied" '<QubesFirewallRules policy="deny" dns="deny" icmp="deny"/>'
blocked "vm1 cannot ping 192.0.2.1" $V1 ping 192.0.2.1
blocked "nor its gateway" $V1 ping $GWIP
blocked "nor reach 192.0.2.1:1234" $V1 tcp 192.0.2.1 1234
blocked "nor the gateway's DNS (UDP)" $V1 udp $GWIP 53
blocked "(TCP)" $V1 tcp $GWIP 53

vm1 "ICMP allowed" '<QubesFirewallRules policy="deny" dns="deny" icmp="allow"/>'
reaches "vm1 pings 192.0.2.1" $V1 ping 192.0.2.1
reaches "and its gateway" $V1 ping $GWIP
blocked "TCP to 192.0.2.1:1234 is still blocked" $V1 tcp 192.0.2.1 1234
blocked "and DNS" $V1 udp $GWIP 53

vm1 "DNS allowed" '<QubesFirewallRules policy="deny" dns="allow" icmp="allow"/>'
reaches "vm1 reaches the gateway's DNS (UDP)" $V1 udp $GWIP 53
reaches "(TCP)" $V1 tcp $GWIP 53
blocked "TCP to 192.0.2.1:1234 is still blocked" $V1 tcp 192.0.2.1 1234
blocked "and so is the gateway's TCP 1234 (no VM but for DNS and ICMP)" $V1 tcp $GWIP 1234

rule='<rule address="192.0.2.1" proto="tcp" port="1234"/>'
vm1 "policy deny, 192.0.2.1/32 tcp 1234" \
    "<QubesFirewallRules policy=\"deny\" dns=\"allow\" icmp=\"allow\">$rule</QubesFirewallRules>"
reaches "vm1 reaches 192.0.2.1:1234" $V1 tcp 192.0.2.1 1234
blocked "but not 192.0.2.1:53" $V1 tcp 192.0.2.1 53

# A rule that expires: applied before its time, left out after it.
soon=$(($(date +%s) + 3600))
expiring='<rule address="192.0.2.1" proto="tcp" port="1234" expire="'$soon'"/>'
xml="<QubesFirewallRules policy=\"deny\" dns=\"allow\" icmp=\"allow\">$expiring</QubesFirewallRules>"
vm1 "the same rule, to expire in an hour" "$xml"
is "$out" "next expiry: $soon" "the helper is told when to apply the rules again"
reaches "vm1 reaches 192.0.2.1:1234" $V1 tcp 192.0.2.1 1234
vm1 "applied again, an hour later" "$xml" -t $((soon + 1))
is "$out" "" "no expiry to come"
blocked "vm1 no longer reaches 192.0.2.1:1234" $V1 tcp 192.0.2.1 1234

vm1 "policy allow, 192.0.2.1/32 tcp 1234" \
    "<QubesFirewallRules policy=\"allow\" dns=\"allow\" icmp=\"allow\">$rule</QubesFirewallRules>"
blocked "vm1 cannot reach 192.0.2.1:1234" $V1 tcp 192.0.2.1 1234
reaches "but reaches 192.0.2.1:53" $V1 tcp 192.0.2.1 53
blocked "the outside world cannot open a connection to vm1" $GW tcp $V1IP 1234 192.0.2.1
blocked "nor ping it" $GW ping $V1IP 192.0.2.1

# vm1 as a ProxyVM: it routes 10.137.7.0/24 (an address of it on lo stands
# for a VM behind it) without translation, and the gateway routes that
# network back through it. Its own rules hold for its own address only;
# what it forwards gets anti-spoofing and no other VM (the rules of the VMs
# behind it are on their own interfaces); DNS to its gateway stays open.
FWD=10.137.7.5
ip -n $V1 addr add $FWD/32 dev lo && nsx $V1 sysctl -qw net.ipv4.conf.eth0.arp_announce=2 &&
    ip -n $GW route add 10.137.7.0/24 via $V1IP
ok $? "vm1 routes 10.137.7.0/24, the gateway knows the way back"
vm1 "vm1 as a ProxyVM: deny all, DNS and ICMP denied" \
    '<QubesFirewallRules policy="deny" dns="deny" icmp="deny"/>' -x 10.137.7.0/24 -x 10.138.7.0/24
blocked "its own address cannot reach 192.0.2.1:1234" $V1 tcp 192.0.2.1 1234
blocked "nor ping 192.0.2.1" $V1 ping 192.0.2.1
reaches "but its gateway's DNS stays open (it answers its VMs' DNS there)" $V1 udp $GWIP 53
reaches "what it forwards reaches 192.0.2.1:1234" $V1 tcp 192.0.2.1 1234 $FWD
reaches "and pings 192.0.2.1" $V1 ping 192.0.2.1 $FWD
blocked "but not another VM" $V1 tcp $V2IP 1234 $FWD
blocked "nor its gateway's TCP 1234" $V1 tcp $GWIP 1234 $FWD
vm1 "vm1 as a ProxyVM: policy deny, 192.0.2.1/32 tcp 1234" \
    "<QubesFirewallRules policy=\"deny\" dns=\"deny\" icmp=\"deny\">$rule</QubesFirewallRules>" \
    -x 10.137.7.0/24 -x 10.138.7.0/24
reaches "its own address reaches 192.0.2.1:1234" $V1 tcp 192.0.2.1 1234
blocked "but not 192.0.2.1:53" $V1 tcp 192.0.2.1 53
reaches "what it forwards still does" $V1 tcp 192.0.2.1 53 $FWD
ip -n $GW route del 10.137.7.0/24 via $V1IP && ip -n $V1 addr del $FWD/32 dev lo
vm1 "vm1 an AppVM again: policy allow, 192.0.2.1/32 tcp 1234" \
    "<QubesFirewallRules policy=\"allow\" dns=\"allow\" icmp=\"allow\">$rule</QubesFirewallRules>"

# Other VMs: not directly, not through the gateway; vm2's chains alone
# are enough, and so are vm1's.
via_gw() {  # vm1 and vm2 send to each other through the gateway (by its MAC) or directly
    if [ "$1" = gw ]; then
        ip -n $V1 neigh replace $V2IP lladdr $GWMAC dev eth0 nud permanent
        ip -n $V2 neigh replace $V1IP lladdr $GWMAC dev eth0 nud permanent
    else
        ip -n $V1 neigh replace $V2IP lladdr $V2MAC dev eth0 nud permanent
        ip -n $V2 neigh replace $V1IP lladdr $V1MAC dev eth0 nud permanent
    fi
}
vm_to_vm() {  # vm_to_vm WHOSE-CHAINS
    for path in direct gw; do
        via_gw $path
        blocked "$1: vm1 cannot ping vm2 ($path)" $V1 ping $V2IP
        blocked "$1: nor reach its TCP 1234 ($path)" $V1 tcp $V2IP 1234
    done
    blocked "$1: vm2 cannot ping vm1" $V2 ping $V1IP
}
vm_to_vm "both VMs' chains"
apply "vm1's chains removed" -r qvm1
vm_to_vm "vm2's chains"
vm1 "vm1's chains back" '<QubesFirewallRules policy="allow" dns="allow" icmp="allow"/>'
apply "vm2's chains removed" -r qvm2
vm_to_vm "vm1's chains"
apply "vm2's chains back" qvm2 $V2MAC $V2IP $GWMAC $GWIP $DISPGW
ip -n $V1 neigh del $V2IP dev eth0 && ip -n $V2 neigh del $V1IP dev eth0

# Pretending to be another: vm2's address, another MAC, the gateway's MAC;
# VLAN tags and IPv6. vm1 knows the gateway's MAC without asking: its ARP
# would be refused on its own.
knows_gw() {
    ip -n $V1 neigh replace $GWIP lladdr $GWMAC dev eth0 nud permanent
}
n=$(received vm1mac)
ip -n $V1 addr del $V1IP/24 dev eth0 && ip -n $V1 addr add $V2IP/24 dev eth0 &&
    ip -n $V1 route add default via $GWIP && knows_gw
blocked "vm1 with vm2's address cannot ping its gateway" $V1 ping $GWIP
blocked "nor reach 192.0.2.1:53" $V1 tcp 192.0.2.1 53
is "$(received vm1mac)" "$n" "the gateway received nothing from vm1 meanwhile"
ip -n $V1 addr del $V2IP/24 dev eth0 && ip -n $V1 addr add $V1IP/24 dev eth0 &&
    ip -n $V1 route add default via $GWIP && knows_gw
reaches "with its own address back, vm1 reaches 192.0.2.1:53" $V1 tcp 192.0.2.1 53
ip -n $V1 link set eth0 address $NEWMAC && knows_gw
blocked "vm1 with another MAC cannot ping its gateway" $V1 ping $GWIP
blocked "nor reach 192.0.2.1:53" $V1 tcp 192.0.2.1 53
is "$(received newmac)" 0 "the gateway received nothing from that MAC"
# (A new address or MAC drops every neighbour, the permanent one too.)
ip -n $V1 link set eth0 address $V1MAC
reaches "with its own MAC back, vm1 reaches 192.0.2.1:53" $V1 tcp 192.0.2.1 53
probe $V1 raw "$VLAN_FRAME" && probe $V1 raw "$IPV6_FRAME" && probe $V1 raw "$FRAGMENT"
is "$(received tagged) $(received sixes) $(received fragments)" "1 1 1" \
   "a VLAN-tagged frame, an IPv6 packet and a fragment from vm1 reach nothing"
is "$(vm2_on_gw)" "" "vm1's ARP lie does not reach the gateway"
is "$(gw_port_after_lie)" qnet9 "a frame from vm1 with the gateway's MAC does not move the gateway in the bridge"

# The host is on no VM network.
host_address add
ip -n $H neigh flush dev $BR && ip -n $V1 neigh flush dev eth0
blocked "the host with an address on the bridge does not answer vm1" $V1 ping $DISPGW
case "$(ip -n $V1 neigh show $DISPGW dev eth0)" in
    *lladdr*|"") ok 1 "vm1 asked for the host's address by ARP, unanswered" ;;
    *) ok 0 "vm1 asked for the host's address by ARP, unanswered" ;;
esac
is "$(ip -n $H neigh show $V1IP dev $BR)" "" "the host did not hear it"
n=$(received fromhost $V1)
blocked "and does not reach vm1" $H ping $V1IP
is "$(received fromhost $V1)" "$n" "which receives nothing from it"
host_address del

# Removal: what is left is what vm2's script alone makes; then the empty base.
apply "vm1's chains removed" -r qvm1
rules=$(nsx $H "$NFT" list ruleset)
alone=$(unshare -n sh -c "'$HELPER' qvm2 $V2MAC $V2IP $GWMAC $GWIP $DISPGW && '$NFT' list ruleset")
is "$rules" "$alone" "the ruleset is what vm2's script alone makes"
by_program=$(unshare -n sh -c "QUBES_NFT='$NFT' '$HELPER' qvm2 $V2MAC $V2IP $GWMAC $GWIP $DISPGW &&
    '$NFT' list ruleset")
is "$by_program" "$alone" "the nft program (QUBES_NFT) makes the same ruleset"
reaches "vm1 reaches 192.0.2.1:1234 again" $V1 tcp 192.0.2.1 1234
apply "vm2's chains removed" -r qvm2
rules=$(nsx $H "$NFT" list ruleset)
alone=$(unshare -n sh -c "'$HELPER' qvm2 $V2MAC $V2IP $GWMAC $GWIP $DISPGW && '$HELPER' -r qvm2 &&
    '$NFT' list ruleset")
is "$rules" "$alone" "the ruleset is the table and its base chains, as vm2's script and its removal leave them"
case "$rules" in
    *qvm*) ok 1 "no VM is named in it" ;;
    *) ok 0 "no VM is named in it" ;;
esac
reaches "vm1 reaches vm2 again" $V1 tcp $V2IP 1234

done_testing
