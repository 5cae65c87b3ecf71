#!/bin/sh
# Hostile VM names through the tools: refused before anything touches the
# file system, with or without a database.
. "$(dirname "$0")/../lib.sh"
export QUBES_OFFLINE=1
B=$QUBES_BASE_DIR
snapshot() { (cd "$SCRATCH" && find . | sort; cat "$B/qubes.xml" 2>/dev/null | sha256sum); }

nl='a
b'
long=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
for setup in empty fixture; do
    [ $setup = fixture ] && use_fixture
    before=$(snapshot)
    for name in "" 1abc ../etc a/b "a b" $long none TRUE False a.b väinö '$(touch pwned)' \
                'a;b' "$nl" '*' "~root" ".hidden"; do
        run qvm-create -l red -H -- "$name"
        like "$out" "invalid VM name" "$setup: qvm-create refuses the name [$name]"
    done
    run qvm-create -l red -H -- dom0
    like "$out" "reserved for the admin VM" "$setup: qvm-create refuses dom0"
    run qvm-create -l red -H -x
    is "$rc" 2 "$setup: a name that looks like an option is a usage error"
    is "$(snapshot)" "$before" "$setup: nothing on disk changed"
done
test ! -e pwned && test -z "$(find "$SCRATCH" -name pwned)"
ok $? "no name ever reached a shell"

use_fixture
before=$(snapshot)
for name in ../x a/b none "" dom0; do
    run qvm-prefs -s test-work name "$name"
    ok "$([ "$rc" = 1 ]; echo $?)" "qvm-prefs refuses to rename to [$name]"
done
is "$(snapshot)" "$before" "refused renames change nothing"
run qvm-create -l red -H ok-name_1
is "$rc" 0 "control: a valid name is accepted"
test -d "$B/appvms/ok-name_1"
ok $? "and gets its directory"
done_testing
