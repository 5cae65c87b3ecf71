#!/bin/sh
# Python literals of qubes.xml (tests/unit/test_pyliteral.c).
. "$(dirname "$0")/../lib.sh"
# exec skips the EXIT trap: the scratch area (unused here) goes first.
rm -rf "$SCRATCH"
exec "$UNIT/test_pyliteral"
