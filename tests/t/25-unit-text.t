#!/bin/sh
# Text from guests and files reaches a terminal escaped (tests/unit/test_text.c).
. "$(dirname "$0")/../lib.sh"
rm -rf "$SCRATCH"
exec "$UNIT/test_text"
