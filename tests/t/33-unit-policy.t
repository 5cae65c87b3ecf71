#!/bin/sh
# qrexec policy evaluation (tests/unit/test_policy.c).
. "$(dirname "$0")/../lib.sh"
export SCRATCH
"$UNIT/test_policy"
