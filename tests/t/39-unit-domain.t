#!/bin/sh
# The domain XML without a hypervisor (tests/unit/test_domain.c): the
# QEMU capability override, the memory file's arguments, the root ports.
. "$(dirname "$0")/../lib.sh"
rm -rf "$SCRATCH"
exec "$UNIT/test_domain"
