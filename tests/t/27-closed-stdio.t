#!/bin/sh
# A tool started with its standard input, output or error closed: the
# files it opens must not become them, or its progress text would land in
# a lock file, a database or an image (and its children's too). On
# libvirt's test driver.
. "$(dirname "$0")/../lib.sh"
export QUBES_VMM_URI=test:///default
B=$QUBES_BASE_DIR R=$QUBES_RUN_DIR
truncate -s 64M "$SCRATCH/root.img"
qvm-create -q -l black --hvm-template -r "$SCRATCH/root.img" tpl
qvm-create -q -l blue -H -t tpl kid
sum=$(sha256sum < "$B/qubes.xml")

qvm-start --no-wait kid 2>&-
is "$?" 0 "qvm-start runs with its standard error closed"
is "$(stat -c %s "$R/start.lock")" 0 "and writes nothing into the start lock"
qvm-start --no-wait kid <&- >&- 2>&-
is "$?" 0 "and with all three closed"
is "$(stat -c %s "$R/start.lock")" 0 "still nothing in the start lock"
qemu-img check "$B/appvms/kid/volatile.img" >/dev/null 2>&1
ok $? "the root layer it made is a sound image"
qvm-prefs -s kid label green 2>&-
is "$(qvm-prefs -g kid label)" "green" "qvm-prefs -s with its standard error closed changes the label"
qvm-prefs -s nosuch label green 2>&-
is "$?" 1 "and fails as it should for a VM that does not exist"
"$HELPERS/xmldump" "$B/qubes.xml" >/dev/null 2>&1
ok $? "the database is still well-formed XML"
for f in "$R/start.lock" "$R/vms/kid/agent.lock"; do
    [ -e "$f" ] || continue
    is "$(stat -c %s "$f")" 0 "$(basename "$f") holds no stray text"
done
ok "$([ "$(sha256sum < "$B/qubes.xml")" != "$sum" ]; echo $?)" "(the label change was saved)"
done_testing
