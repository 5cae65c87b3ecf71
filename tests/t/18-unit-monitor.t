#!/bin/sh
# The monitor layout (tests/unit/test_monitor.c).
. "$(dirname "$0")/../lib.sh"
rm -rf "$SCRATCH"
exec "$UNIT/test_monitor"
