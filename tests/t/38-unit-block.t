#!/bin/sh
# qvm-block's rules without a hypervisor (tests/unit/test_block.c): the
# disk XML both ways, frontends, the checks of a source.
. "$(dirname "$0")/../lib.sh"
rm -rf "$SCRATCH"
exec "$UNIT/test_block"
