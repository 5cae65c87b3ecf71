#!/bin/sh
# Python literals of qubes.xml (tests/unit/test_pyliteral.c).
. "$(dirname "$0")/../lib.sh"
exec "$UNIT/test_pyliteral"
