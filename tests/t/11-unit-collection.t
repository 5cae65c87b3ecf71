#!/bin/sh
# The VM model through the C API (tests/unit/test_collection.c): the
# original's qubes.xml, round trips, qid/netid allocation, the indexes.
. "$(dirname "$0")/../lib.sh"
export QUBES_TEST_FIXTURES="$FIXTURES"
# exec skips the EXIT trap: the scratch area (unused here) goes first.
rm -rf "$SCRATCH"
exec "$UNIT/test_collection"
