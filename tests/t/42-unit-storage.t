#!/bin/sh
# What a qcow2 image's header names as its backing file, and backing files
# made read-only to all but their owner (tests/unit/test_storage.c).
. "$(dirname "$0")/../lib.sh"
rm -rf "$SCRATCH"
exec "$UNIT/test_storage"
