#!/bin/sh
# DispVM savefiles (dispvm/savefile.h): the header libvirt writes, refusals
# of broken ones, clones under a DispVM's identity (their domain XML against
# the reviewed files in tests/savefile/), the FIFO feed; the RAM file a
# shared-memory savefile names.
. "$(dirname "$0")/../lib.sh"
mkdir -p "$SCRATCH/out"
"$UNIT/test_savefile" "$top/tests/savefile" "$SCRATCH/out"
rc=$?
if [ "$rc" != 0 ]; then
    for f in "$SCRATCH"/out/*.xml; do
        diff -u "$top/tests/savefile/${f##*/}" "$f" | sed 's/^/# /'
    done
fi
exit $rc
