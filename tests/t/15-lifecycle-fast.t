#!/bin/sh
# The power-state table and the template exclusion on libvirt's test driver.
. "$(dirname "$0")/../lib.sh"
exec "$UNIT/test_lifecycle"
