#!/bin/sh
# Network identities from VM records (tests/unit/test_net.c).
. "$(dirname "$0")/../lib.sh"
rm -rf "$SCRATCH"
exec "$UNIT/test_net"
