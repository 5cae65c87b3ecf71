#!/bin/sh
# The session multiplexer over a socketpair (tests/unit/test_mux.c).
. "$(dirname "$0")/../lib.sh"
export SCRATCH
"$UNIT/test_mux"
