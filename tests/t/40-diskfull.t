#!/bin/sh
# A full file system: saves fail cleanly and lose nothing (a small tmpfs).
. "$(dirname "$0")/../lib.sh"
export QUBES_OFFLINE=1
mnt=$SCRATCH/full
mkdir -p "$mnt"
if [ "$(id -u)" != 0 ] || ! mount -t tmpfs -o size=2m,nr_inodes=2000 tmpfs "$mnt" 2>/dev/null; then
    echo "1..0 # SKIP mounting a small tmpfs needs root"
    exit 0
fi
trap 'umount "$mnt" 2>/dev/null; rm -rf "$SCRATCH"' EXIT
export QUBES_BASE_DIR=$mnt/base
B=$QUBES_BASE_DIR
db=$B/qubes.xml

qvm-create -q -l black --hvm-template tpl && qvm-create -q -l red -H -t tpl work
ok $? "a database on a small file system"
before=$(sha256sum < "$db")
dd if=/dev/zero of="$mnt/filler" bs=4k 2>/dev/null
ok "$(df --output=avail "$mnt" | tail -n 1 | grep -qx ' *0'; echo $?)" "the file system is full"

run qvm-prefs -s work memory 999
is "$rc" 1 "qvm-prefs -s fails on a full disk"
like "$out" "No space left on device" "and says why"
like "$out" "old $db kept" "and that the old file is kept"
is "$(sha256sum < "$db")" "$before" "qubes.xml is intact"
is "$(ls -A "$B" | grep -c '^\.qubes\.xml\.tmp-')" "0" "no temporary file is left"
is "$(qvm-prefs -g work memory)" "512" "the database still loads with the old value"

run qvm-create -l red -H -t tpl other
is "$rc" 1 "qvm-create fails on a full disk"
test ! -e "$B/appvms/other"
ok $? "and leaves no VM directory behind"
is "$(sha256sum < "$db")" "$before" "qubes.xml is still intact"

truncate -s 1M "$mnt/mine.img"
run qvm-create -l red -H -R "$mnt/mine.img" other
is "$rc" 1 "qvm-create -R fails on a full disk"
test -f "$mnt/mine.img" && test ! -e "$B/appvms/other"
ok $? "and gives the moved image back"

rm -f "$mnt/filler"
run qvm-prefs -s work memory 999
is "$rc" 0 "with space back, the save succeeds"
is "$(qvm-prefs -g work memory)" "999" "and the new value is there"

done_testing
