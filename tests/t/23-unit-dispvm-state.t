#!/bin/sh
# What dispvm/ computes once per request and per DispVM, from a database.
. "$(dirname "$0")/../lib.sh"
rm -rf "$SCRATCH"
exec "$UNIT/test_dispvm_state"
