#!/bin/sh
# A process's threads' CPU time and page faults, by class, as --timings
# reports a DispVM's emulator's (tests/unit/test_proc.c).
. "$(dirname "$0")/../lib.sh"
rm -rf "$SCRATCH"
exec "$UNIT/test_proc"
