#!/bin/sh
# Locks on qubes.xml: exclusion, the rename race, saves under a held lock,
# helpers under a parent's lock (tests/unit/test_locking.c).
. "$(dirname "$0")/../lib.sh"
export QUBES_TEST_BIN="$BIN" QUBES_TEST_FIXTURES="$FIXTURES" TMPDIR="$SCRATCH"
# Not exec: the EXIT trap removes the scratch area the test used.
"$UNIT/test_locking"
exit $?
