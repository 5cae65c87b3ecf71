#!/usr/bin/perl
# The layers of the library point one way. The order is the one the README
# writes down ("## Layers"): a module (a .c file and its .h) may include
# and call modules of its own layer and of the layers below, never above,
# and no two modules depend on each other, directly or through others.
# Checked twice: #include "..." lines in the sources, and the symbols each
# object of the sanitizer build takes from the others (nm); a call through
# a declaration in another module's header counts where it lands.
use strict;
use warnings;
use File::Basename qw(dirname);
use File::Find;
use File::Spec;

my $top = File::Spec->rel2abs(dirname(__FILE__) . '/../..');
my $unit = $ENV{QUBES_TEST_UNIT} || "$top/build/san/tests";
my $obj = "$unit/../obj";
chdir $top or die "$top: $!";
my $n = 0;
my $failed = 0;
sub ok {
    my ($cond, $name, @diag) = @_;
    $n++;
    print(($cond ? 'ok' : 'not ok') . " $n - $name\n");
    print "#   $_\n" for @diag;
    $failed++ unless $cond;
}

# The layers, bottom first, from the README.
open my $readme, '<', 'README.md' or die "README.md: $!";
my ($in, @layers) = (0);
while (<$readme>) {
    if (/^## Layers/) { $in = 1; next; }
    last if $in && /^## /;
    next unless $in && /^    (\S+)\s+(.+)$/;
    my ($name, @patterns) = ($1, split ' ', $2);
    # Braces list modules; a * stands for any name in a folder.
    push @layers, { name => $name, patterns => [map { /\*/ ? $_ : glob($_) } @patterns] };
}
close $readme;
ok(@layers >= 3, 'the README lists the layers (' . join(' < ', map { $_->{name} } @layers) . ')');

# Every module of the library, the tools and the guest.
my %module;
find(sub {
    return unless /\.[ch]$/;
    my $m = $File::Find::name =~ s/\.[ch]$//r;
    $module{$m} = 1;
}, qw(orchestrator dispvm templates storage guest));
my %layer_of;
my @unplaced;
for my $m (sort keys %module) {
    for my $i (0 .. $#layers) {
        for my $p (@{ $layers[$i]{patterns} }) {
            my $re = '^' . join('[^/]*', map { quotemeta } split /\*/, $p, -1) . '$';
            if ($m =~ $re) { $layer_of{$m} //= $i; }
        }
    }
    push @unplaced, $m unless defined $layer_of{$m};
}
ok(!@unplaced, 'every module has a layer', map { "no layer: $_" } @unplaced);

# A graph's edges that go up, and its cycles.
sub check {
    my ($what, %g) = @_;
    my @up;
    for my $a (sort keys %g) {
        for my $b (sort keys %{ $g{$a} }) {
            next unless defined $layer_of{$a} && defined $layer_of{$b};
            push @up, "$a ($layers[$layer_of{$a}]{name}) -> $b ($layers[$layer_of{$b}]{name})"
                if $layer_of{$b} > $layer_of{$a};
        }
    }
    ok(!@up, "$what point down the layers", @up);
    # Tarjan's strongly connected components.
    my ($index, %idx, %low, @stack, %on, @cycles) = (0);
    my $visit;
    $visit = sub {
        my $v = shift;
        $idx{$v} = $low{$v} = $index++;
        push @stack, $v;
        $on{$v} = 1;
        for my $w (sort keys %{ $g{$v} || {} }) {
            if (!defined $idx{$w}) { $visit->($w); $low{$v} = $low{$w} if $low{$w} < $low{$v}; }
            elsif ($on{$w}) { $low{$v} = $idx{$w} if $idx{$w} < $low{$v}; }
        }
        if ($low{$v} == $idx{$v}) {
            my @c;
            while (1) { my $w = pop @stack; delete $on{$w}; push @c, $w; last if $w eq $v; }
            push @cycles, join(' <-> ', sort @c) if @c > 1;
        }
    };
    $visit->($_) for grep { !defined $idx{$_} } sort keys %g;
    ok(!@cycles, "no two modules depend on each other through $what", @cycles);
    return scalar(map { keys %$_ } values %g);
}

# Includes.
my %inc;
for my $m (sort keys %module) {
    for my $file (grep { -f } "$m.c", "$m.h") {
        open my $fh, '<', $file or die "$file: $!";
        while (<$fh>) {
            next unless /^\s*#\s*include\s+"([^"]+)"/;
            my $t = File::Spec->abs2rel(File::Spec->rel2abs($1, dirname($file)), $top);
            1 while $t =~ s{[^/]+/\.\./}{};
            $t =~ s/\.[ch]$//;
            $inc{$m}{$t} = 1 if $t ne $m && $module{$t};
        }
        close $fh;
    }
}
my $edges = check('includes', %inc);
print "# $edges include edges between ", scalar(keys %module), " modules\n";

# Calls and data, from the objects.
my @objs;
find(sub { push @objs, $File::Find::name if /\.o$/ }, grep { -d } map { "$obj/$_" }
     qw(orchestrator dispvm templates storage));
@objs = grep { !m{/tools/} } @objs;
if (!@objs || system('nm --version >/dev/null 2>&1') != 0) {
    ok(1, "# SKIP no objects in $obj or no nm: build with make san");
} else {
    my (%defined_in, %needs);
    for my $o (@objs) {
        my $m = File::Spec->abs2rel($o, $obj) =~ s/\.o$//r;
        for (`nm $o`) {
            if (/^\s+U (\S+)/) { $needs{$m}{$1} = 1; }
            elsif (/^[0-9a-f]+ [TDBRC] (\S+)/) { $defined_in{$1} = $m; }
        }
    }
    my %calls;
    for my $m (keys %needs) {
        for my $s (keys %{ $needs{$m} }) {
            my $d = $defined_in{$s};
            $calls{$m}{$d} = 1 if defined $d && $d ne $m;
        }
    }
    $edges = check('calls', %calls);
    print "# $edges call edges between ", scalar(@objs), " objects\n";
}

print "1..$n\n";
exit($failed ? 1 : 0);
