#!/bin/sh
# make bench: the database benchmarks on the optimised build.
# Usage: bench/run.sh BUILD-DIR
set -eu
build=${1:?usage: bench/run.sh BUILD-DIR}
echo "machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
echo "file system of TMPDIR (${TMPDIR:-/tmp}): $(df -T "${TMPDIR:-/tmp}" | awk 'NR==2 {print $2}')"
echo
"$build/bench/bench_db" "$build/bin"
