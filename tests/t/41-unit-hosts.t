#!/bin/sh
# The host registry without a hypervisor (tests/unit/test_hosts.c): names,
# URIs, the write lock, a round trip, hostile files.
. "$(dirname "$0")/../lib.sh"
rm -rf "$SCRATCH"
exec "$UNIT/test_hosts"
