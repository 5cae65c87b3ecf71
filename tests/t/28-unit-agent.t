#!/bin/sh
# The host side of the agent protocol against a hostile agent
# (tests/unit/test_agent.c): lies, silence, half frames, control
# characters, a caller gone.
. "$(dirname "$0")/../lib.sh"
rm -rf "$SCRATCH"
exec "$UNIT/test_agent" "$HELPERS/hostile-agent"
