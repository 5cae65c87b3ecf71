#!/bin/sh
# A VM's qrexec-daemon and the host's callers against a hostile agent on
# the VM's channel (tests/unit/test_agent.c, tests/helpers/hostile-agent.c):
# lies, silence, half frames, control characters, a flood beyond the
# credit, frames too long or of unknown types, CALLs dom0 must refuse, the
# channel's end.
. "$(dirname "$0")/../lib.sh"
export SCRATCH
"$UNIT/test_agent" "$HELPERS/hostile-agent" "$BIN"
