#!/bin/sh
# The power-state table and the template exclusion on libvirt's test driver.
. "$(dirname "$0")/../lib.sh"
# exec skips the EXIT trap: the scratch area (unused here) goes first.
rm -rf "$SCRATCH"
exec "$UNIT/test_lifecycle"
