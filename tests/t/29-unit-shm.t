#!/bin/sh
# A /dev/shm/qubes made first by another user (tests/unit/test_shm.c, in a
# private mount namespace: the host's /dev/shm is never touched).
. "$(dirname "$0")/../lib.sh"
rm -rf "$SCRATCH"
exec "$UNIT/test_shm"
