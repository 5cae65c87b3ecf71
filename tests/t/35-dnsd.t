#!/usr/bin/perl
# The guest's DNS server (guest/qubes-dnsd.c) on 127.0.0.1, with packets
# built by hand: the names it answers itself, NXDOMAIN for the others,
# hostile packets that must neither crash it nor stop it, forwarding
# through a second one, and a fake upstream whose answers are forged from
# the wrong port, with the wrong id or question, late, or evicted.
use strict;
use warnings;
use File::Basename qw(dirname);
use File::Spec;
use IO::Select;
use IO::Socket::INET;
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);

my $top = File::Spec->rel2abs(dirname(__FILE__) . '/../..');
my $guest = $ENV{QUBES_TEST_GUEST} || "$top/build/guest";
my $dnsd = "$guest/qubes-dnsd";
unless (-x $dnsd) {
    print "1..0 # SKIP no $dnsd (make build/guest/qubes-dnsd)\n";
    exit 0;
}

my $n = 0;
my $failed = 0;
sub ok {
    my ($cond, $name, @diag) = @_;
    $n++;
    print(($cond ? 'ok' : 'not ok') . " $n - $name\n");
    return $cond if $cond;
    print "#   $_\n" for @diag;
    $failed++;
    return $cond;
}
sub is {
    my ($got, $want, $name) = @_;
    $got //= 'undef';
    ok($got eq $want, $name, "got:      $got", "expected: $want");
}

# ---- Packets ----

use constant { A => 1, AAAA => 28, ANY => 255, IN => 1 };
use constant { NOERROR => 0, FORMERR => 1, SERVFAIL => 2, NXDOMAIN => 3, NOTIMP => 4 };

sub wire_name {
    my $name = shift;
    return join('', map { chr(length) . $_ } split /\./, $name) . "\0";
}

sub header {
    my ($id, $flags, $qd, $an, $ns, $ar) = @_;
    return pack 'n6', $id, $flags, $qd // 1, $an // 0, $ns // 0, $ar // 0;
}

# A standard query with RD set.
sub query {
    my ($id, $name, $type) = @_;
    return header($id, 0x0100) . wire_name($name) . pack('nn', $type // A, IN);
}

# A name at the start of $$msg at $off: its text and the offset after it.
sub read_name {
    my ($msg, $off) = @_;
    my @labels;
    my $jumped;
    my $end;
    for (my $hops = 0; $hops < 20; $hops++) {
        return if $off >= length $msg;
        my $len = ord substr($msg, $off, 1);
        if (($len & 0xc0) == 0xc0) {
            return if $off + 2 > length $msg;
            $end //= $off + 2;
            $off = unpack('n', substr($msg, $off, 2)) & 0x3fff;
            next;
        }
        if ($len == 0) {
            $end //= $off + 1;
            return (join('.', @labels), $end);
        }
        return if $off + 1 + $len > length $msg;
        push @labels, substr($msg, $off + 1, $len);
        $off += 1 + $len;
    }
    return;
}

# An answer taken apart: id, flags, rcode, counts, the question and the A
# records (their addresses and TTLs), or undef if it cannot be read.
sub parse {
    my $msg = shift;
    return unless defined $msg && length $msg >= 12;
    my %r;
    @r{qw(id flags qd an ns ar)} = unpack 'n6', $msg;
    $r{rcode} = $r{flags} & 0xf;
    $r{qr} = ($r{flags} >> 15) & 1;
    $r{aa} = ($r{flags} >> 10) & 1;
    my $off = 12;
    if ($r{qd} == 1) {
        ($r{qname}, $off) = read_name($msg, $off);
        return unless defined $off && $off + 4 <= length $msg;
        @r{qw(qtype qclass)} = unpack 'nn', substr($msg, $off, 4);
        $off += 4;
    }
    $r{a} = [];
    for (1 .. $r{an}) {
        my $name;
        ($name, $off) = read_name($msg, $off);
        return unless defined $off && $off + 10 <= length $msg;
        my ($type, $class, $ttl, $len) = unpack 'nnNn', substr($msg, $off, 10);
        $off += 10;
        return if $off + $len > length $msg;
        if ($type == A && $len == 4) {
            push @{ $r{a} }, join('.', unpack 'C4', substr($msg, $off, 4));
            push @{ $r{ttl} }, $ttl;
            push @{ $r{aname} }, $name;
        }
        $off += $len;
    }
    return \%r;
}

# An answer with one A record, as an upstream would send it.
sub upstream_answer {
    my ($id, $name, $ip, $rcode) = @_;
    my $an = defined $ip ? 1 : 0;
    my $msg = header($id, 0x8180 | ($rcode // 0), 1, $an) . wire_name($name) . pack('nn', A, IN);
    $msg .= pack('nnnNn', 0xc00c, A, IN, 300, 4) . pack('C4', split /\./, $ip) if $an;
    return $msg;
}

# ---- Sockets and servers ----

sub udp {
    my $s = IO::Socket::INET->new(Proto => 'udp', LocalAddr => '127.0.0.1', LocalPort => 0)
        or die "udp socket: $!";
    return $s;
}

# One datagram within $timeout seconds, or undef.
sub receive {
    my ($s, $timeout) = @_;
    return unless IO::Select->new($s)->can_read($timeout // 2);
    my $buf = '';
    my $from = $s->recv($buf, 65535);
    return unless defined $from;
    return wantarray ? ($buf, $from) : $buf;
}

sub send_to {
    my ($s, $port, $msg) = @_;
    my $to = Socket::pack_sockaddr_in($port, Socket::inet_aton('127.0.0.1'));
    defined $s->send($msg, 0, $to) or die "send to port $port: $!";
}

# The answer to $msg sent to the server on $port from a fresh socket.
sub ask {
    my ($port, $msg, $timeout) = @_;
    my $s = udp();
    send_to($s, $port, $msg);
    return parse(scalar receive($s, $timeout));
}

sub free_port {
    my $s = udp();
    return $s->sockport;
}

my %servers;                    # pid => port
END {
    kill 'KILL', keys %servers if %servers;
}

sub alive {
    my $pid = shift;
    return waitpid($pid, WNOHANG) == 0;
}

# A server on 127.0.0.1 and a free port, once it answers (a query with no
# question gets FORMERR, and is never forwarded): its pid and port.
sub start {
    my @args = @_;
    for my $try (1 .. 5) {
        my $port = free_port();
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            exec $dnsd, '-l', '127.0.0.1', '-p', $port, @args;
            die "$dnsd: $!";
        }
        for (1 .. 50) {
            my $r = ask($port, header(7, 0, 0), 0.1);
            if ($r && $r->{id} == 7 && $r->{rcode} == FORMERR) {
                $servers{$pid} = $port;
                return ($pid, $port);
            }
            last unless alive($pid);
        }
        kill 'KILL', $pid;
        waitpid $pid, 0;
    }
    die "$dnsd @args does not start";
}

# Ends a server with SIGTERM: its exit status, or undef if it did not end.
sub stop {
    my $pid = shift;
    kill 'TERM', $pid;
    for (1 .. 100) {
        if (waitpid($pid, WNOHANG) == $pid) {
            delete $servers{$pid};
            return $?;
        }
        sleep 0.02;
    }
    return;
}

# ---- The command line ----

my $help = `$dnsd --help 2>&1`;
is($? >> 8, 0, '--help exits 0');
ok($help =~ /^usage: qubes-dnsd \[-l ADDR\]/ && $help =~ /-f UPSTREAM\[:PORT\]/,
   '--help prints the usage');
for my $bad (['-x', qr/unknown option -x/], ['-l', qr/-l needs an argument/],
             ['-l 1.2.3', qr/not an IPv4 address/], ['-p 0', qr/port must be 1 to 65535/],
             ['-p 65536', qr/port must be/], ['-a test.example', qr/not NAME=IPV4/],
             ['-a bad..name=192.0.2.1', qr/labels of 1 to 63/],
             ['-a ' . ('a' x 64) . '.example=192.0.2.1', qr/labels of 1 to 63/],
             ['-a x.example=192.0.2', qr/not an IPv4 address/],
             ['-a x.example=192.0.2.1 -a X.Example=192.0.2.2', qr/given twice/],
             ['-f example.org', qr/not an IPv4 address/], ['-f 127.0.0.1:x', qr/port must be/],
             ['-f 127.0.0.1 -f 127.0.0.2', qr/only one upstream/],
             ['stray', qr/unexpected argument 'stray'/]) {
    my ($args, $re) = @$bad;
    my $out = `$dnsd $args 2>&1 >/dev/null`;
    my $rc = $? >> 8;
    ok($rc == 2 && $out =~ $re, "bad usage ($args) exits 2 with a message", "status $rc: $out");
}

# ---- Its own names ----

my ($pid1, $port1) = start('-a', 'test.example=192.0.2.1', '-a', 'other.test.=192.0.2.7');

my $r = ask($port1, query(0x1234, 'test.example'));
ok($r && $r->{id} == 0x1234 && $r->{qr} && $r->{rcode} == NOERROR,
   'A test.example: NOERROR with the client\'s id');
is($r && join(',', @{ $r->{a} }), '192.0.2.1', 'one A record, 192.0.2.1');
ok($r && $r->{aa} && $r->{ttl}[0] == 60 && $r->{aname}[0] eq 'test.example'
   && $r->{qname} eq 'test.example' && $r->{qtype} == A,
   'authoritative, TTL 60, the question echoed');

$r = ask($port1, query(0xbeef, 'TEST.Example'));
ok($r && $r->{id} == 0xbeef && $r->{rcode} == NOERROR && "@{ $r->{a} }" eq '192.0.2.1'
   && $r->{qname} eq 'TEST.Example', 'TEST.Example: the same, its case kept in the question');

$r = ask($port1, query(2, 'other.test'));
is($r && "@{ $r->{a} }", '192.0.2.7', 'a second name of -a (given with a final dot)');

$r = ask($port1, query(3, 'test.example', ANY));
is($r && "@{ $r->{a} }", '192.0.2.1', 'ANY test.example: the A record');

$r = ask($port1, query(4, 'test.example', AAAA));
ok($r && $r->{id} == 4 && $r->{rcode} == NOERROR && $r->{an} == 0,
   'AAAA test.example: NOERROR, no answer');

$r = ask($port1, query(5, 'nope.example'));
ok($r && $r->{id} == 5 && $r->{rcode} == NXDOMAIN && $r->{an} == 0, 'an unknown name: NXDOMAIN');

$r = ask($port1, query(6, 'sub.test.example'));
ok($r && $r->{rcode} == NXDOMAIN, 'a name under test.example is another name: NXDOMAIN');

# ---- Hostile packets ----

my $probe = query(0x5151, 'test.example');
sub still_answers {
    my ($what) = @_;
    my $a = ask($port1, $probe);
    ok(alive($pid1) && $a && $a->{id} == 0x5151 && "@{ $a->{a} }" eq '192.0.2.1',
       "after $what it still answers");
}

my $q = query(9, 'test.example');
my $label63 = 'a' x 63;
my $name255 = join('.', $label63, $label63, $label63, 'a' x 61);       # 255 bytes on the wire
my $name256 = join('.', $label63, $label63, $label63, 'a' x 62);
my $a_in = pack 'nn', A, IN;
# A query with id 9 and RD, its question (or what stands for it) @_.
sub q9 { return header(9, 0x0100) . join('', @_); }
my @hostile = (
    ['an empty packet', '', undef],
    ['11 bytes', substr($q, 0, 11), undef],
    ['a header alone', header(9, 0x0100, 0), FORMERR],
    ['QDCOUNT 2', header(9, 0x0100, 2) . substr($q, 12) . substr($q, 12), FORMERR],
    ['QDCOUNT 0xffff', header(9, 0x0100, 0xffff) . substr($q, 12), FORMERR],
    ['a label past the end', q9("\x3fabc"), FORMERR],
    ['a name with no end', q9("\x04test\x07example"), FORMERR],
    ['no type and class', q9(wire_name('test.example'), "\0\1\0"), FORMERR],
    ['a compression pointer in the question', q9("\xc0\x0c", $a_in), FORMERR],
    ['a pointer after a label', q9("\x04test\xc0\x0c", $a_in), FORMERR],
    ['an extended label type (0x40)', q9("\x41", $a_in), FORMERR],
    ['a 64-byte label', q9(wire_name('a' x 64), $a_in), FORMERR],
    ['a 300-byte name', q9(wire_name(join '.', ('abcdefghi') x 30), $a_in), FORMERR],
    ['a 256-byte name', q9(wire_name($name256), $a_in), FORMERR],
    ['a 255-byte name (the longest)', q9(wire_name($name255), $a_in), NXDOMAIN],
    ['an answer (QR=1)',
     header(9, 0x8180, 1, 1) . substr($q, 12) . pack('nnnNnC4', 0xc00c, A, IN, 60, 4, 6, 6, 6, 6), undef],
    ['an answer (QR=1) with no question', header(9, 0x8000, 0), undef],
    ['opcode STATUS', header(9, 0x1100) . substr($q, 12), NOTIMP],
    ['a question for the root and 64 KiB of zeros', q9("\0" x 65000), NXDOMAIN],
);
for my $h (@hostile) {
    my ($what, $msg, $want) = @$h;
    my $a = ask($port1, $msg, defined $want ? 2 : 0.3);
    if (defined $want) {
        ok($a && $a->{id} == 9 && $a->{qr} && $a->{rcode} == $want,
           "$what: rcode $want", $a ? "rcode $a->{rcode}" : 'no answer');
    } else {
        ok(!$a, "$what: no answer");
    }
    still_answers($what);
}

# Random bytes behind a query's header, and queries cut at every length.
srand 35;
my $s = udp();
for (1 .. 3000) {
    my $len = int rand 300;
    my $qd = rand() < 0.8 ? 1 : int rand 3;
    send_to($s, $port1, header(int rand 65536, int(rand 65536) & 0x07ff, $qd)
            . join('', map { chr int rand 256 } 1 .. $len));
}
send_to($s, $port1, substr($q, 0, $_)) for 0 .. length($q) - 1;
sleep 0.2;
still_answers('3000 random packets and every cut of a query');

my $echo = IO::Socket::INET->new(Proto => 'udp', LocalAddr => '127.0.0.1', LocalPort => 7);
if ($echo) {
    send_to($echo, $port1, query(10, 'test.example'));
    ok(!receive($echo, 0.3), 'a query from port 7 (echo) is not answered');
} else {
    ok(1, '# SKIP cannot bind port 7 (not root)');
}

# ---- Forwarding through a second server ----

my ($pid2, $port2) = start('-f', "127.0.0.1:$port1");
$r = ask($port2, query(0x7777, 'test.example'));
ok($r && $r->{id} == 0x7777 && $r->{rcode} == NOERROR && "@{ $r->{a} }" eq '192.0.2.1',
   'through the forwarder: A test.example is 192.0.2.1, with the client\'s id');
$r = ask($port2, query(0x7778, 'Test.EXAMPLE'));
ok($r && $r->{id} == 0x7778 && "@{ $r->{a} }" eq '192.0.2.1' && $r->{qname} eq 'Test.EXAMPLE',
   'and Test.EXAMPLE');
$r = ask($port2, query(0x7779, 'nope.example'));
ok($r && $r->{id} == 0x7779 && $r->{rcode} == NXDOMAIN,
   'an unknown name: the NXDOMAIN of the first, relayed');
$r = ask($port2, header(0x777a, 0x0100, 2) . substr($q, 12) . substr($q, 12));
ok($r && $r->{id} == 0x777a && $r->{rcode} == FORMERR, 'a bad query is refused, not forwarded');

# Many clients at once, each with its own id.
my @clients = map { udp() } 1 .. 20;
send_to($clients[$_], $port2, query(1000 + $_, 'test.example')) for 0 .. $#clients;
my $right = grep {
    my $a = parse(scalar receive($clients[$_]));
    $a && $a->{id} == 1000 + $_ && "@{ $a->{a} }" eq '192.0.2.1';
} 0 .. $#clients;
is($right, scalar @clients, '20 clients at once each get their answer with their id');

# ---- A fake upstream ----

my $up = udp();
my $upport = $up->sockport;
my ($pid3, $port3) = start('-f', "127.0.0.1:$upport");
my $client = udp();

# The query as the upstream sees it: its id and where it came from.
sub upstream_gets {
    my ($timeout) = @_;
    my ($msg, $from) = receive($up, $timeout // 2);
    return unless defined $msg;
    my $p = parse($msg);
    my ($fport) = Socket::unpack_sockaddr_in($from);
    return ($p, $fport);
}

send_to($client, $port3, query(0x4242, 'x.example'));
my ($fwd, $fport) = upstream_gets();
ok($fwd && $fwd->{qname} eq 'x.example' && !$fwd->{qr}, 'the query reaches the upstream');
my $answer = upstream_answer($fwd ? $fwd->{id} : 0, 'x.example', '198.51.100.9');

my $forger = udp();
send_to($forger, $fport, $answer);
ok(!receive($client, 0.5), 'an answer from the wrong port is not relayed');
send_to($up, $fport, upstream_answer(($fwd->{id} + 1) & 0xffff, 'x.example', '198.51.100.6'));
ok(!receive($client, 0.5), 'nor one with an id not pending');
send_to($up, $fport, upstream_answer($fwd->{id}, 'y.example', '198.51.100.6'));
ok(!receive($client, 0.5), 'nor one for another question');
send_to($up, $fport, header($fwd->{id}, 0x0100) . substr(query(0, 'x.example'), 12));
ok(!receive($client, 0.5), 'nor a query (QR clear)');
send_to($up, $fport, $answer);
$r = parse(scalar receive($client));
ok($r && $r->{id} == 0x4242 && "@{ $r->{a} }" eq '198.51.100.9',
   'the upstream\'s own answer is relayed with the client\'s id');
send_to($up, $fport, $answer);
ok(!receive($client, 0.5), 'a second copy is not: the query is no longer pending');

send_to($client, $port3, query(0x4343, 'refused.example'));
($fwd) = upstream_gets();
send_to($up, $fport, header($fwd->{id}, 0x8000 | FORMERR, 0));
$r = parse(scalar receive($client));
ok($r && $r->{id} == 0x4343 && $r->{rcode} == FORMERR, 'a refusal with no question is relayed');

# The table: 256 pending, the oldest evicted.
my %ids;
for my $i (0 .. 256) {
    send_to($client, $port3, query(20000 + $i, "q$i.example"));
    my ($p) = upstream_gets();
    last unless $p;
    $ids{$p->{qname}} = $p->{id};
}
is(scalar keys %ids, 257, '257 queries reach the upstream');
my %distinct = reverse %ids;
is(scalar keys %distinct, 257, 'each under its own id');
# A random id equals the client's once in 65536: a few may, not all.
my $kept = grep { $ids{"q$_.example"} == 20000 + $_ } 0 .. 256;
ok($kept < 5, 'fresh ids, not the clients\'', "$kept of 257 kept the client's id");
send_to($up, $fport, upstream_answer($ids{'q0.example'}, 'q0.example', '198.51.100.1'));
ok(!receive($client, 0.5), 'the 257th query evicted the oldest: its answer is not relayed');
send_to($up, $fport, upstream_answer($ids{'q1.example'}, 'q1.example', '198.51.100.1'));
$r = parse(scalar receive($client));
ok($r && $r->{id} == 20001, 'the second oldest is still pending');
send_to($up, $fport, upstream_answer($ids{'q256.example'}, 'q256.example', '198.51.100.1'));
$r = parse(scalar receive($client));
ok($r && $r->{id} == 20256, 'and so is the newest');

# Expiry.
send_to($client, $port3, query(0x5555, 'late.example'));
($fwd) = upstream_gets();
sleep 5.3;
send_to($up, $fport, upstream_answer($fwd->{id}, 'late.example', '198.51.100.2'));
ok(!receive($client, 0.5), 'an answer after 5 s is not relayed');
send_to($client, $port3, query(0x5656, 'soon.example'));
($fwd) = upstream_gets();
send_to($up, $fport, upstream_answer($fwd->{id}, 'soon.example', '198.51.100.3'));
$r = parse(scalar receive($client));
ok($r && $r->{id} == 0x5656 && "@{ $r->{a} }" eq '198.51.100.3', 'one in time is');

# ---- A forwarder that points at itself ----

my $selfport = free_port();
my $selfpid = fork // die "fork: $!";
if ($selfpid == 0) {
    exec $dnsd, '-l', '127.0.0.1', '-p', $selfport, '-f', "127.0.0.1:$selfport";
    die "$dnsd: $!";
}
$servers{$selfpid} = $selfport;
my $ready;
for (1 .. 50) {
    $r = ask($selfport, header(7, 0, 0), 0.1);
    last if $ready = $r && $r->{rcode} == FORMERR;
}
ok($ready, 'a forwarder to itself starts');
$r = ask($selfport, query(0x6161, 'loop.example'), 1);
ok(!$r, 'its query goes nowhere (its own query is not forwarded again)');
$r = ask($selfport, header(8, 0, 0), 1);
ok(alive($selfpid) && $r && $r->{id} == 8, 'and it still answers');

# ---- Fatal errors and the end ----

my $out = `$dnsd -l 127.0.0.1 -p $port1 2>&1`;
my $rc = $? >> 8;
ok($rc == 1 && $out =~ /^qubes-dnsd: cannot listen on 127\.0\.0\.1:$port1: /,
   'a port in use: exit 1 with a message', "status $rc: $out");
$out = `$dnsd -q -l 127.0.0.1 -p $port1 2>&1`;
$rc = $? >> 8;
ok($rc == 1 && $out eq '', 'with -q, exit 1 and no message', "status $rc: $out");

for my $pid ($pid1, $pid2, $pid3, $selfpid) {
    my $st = stop($pid);
    is($st, 0, "SIGTERM ends server $pid with status 0");
}

print "1..$n\n";
exit($failed ? 1 : 0);
