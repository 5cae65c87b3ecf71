#!/bin/sh
# 8 writers x 100 cycles with readers beside them; 200 writers killed
# mid-save (tests/unit/test_contention.c).
. "$(dirname "$0")/../lib.sh"
export QUBES_TEST_FIXTURES="$FIXTURES" TMPDIR="$SCRATCH"
# Not exec: the EXIT trap removes the scratch area the test used.
"$UNIT/test_contention"
exit $?
