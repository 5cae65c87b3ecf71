#!/bin/sh
# make bench: the database benchmarks on the optimised build, then (as
# root, with a libvirt daemon and the test guest) VM starts, DispVMs and
# qrexec on the test guest, each with networking off and on where it
# matters, and a VM on a second host (make host2-up) against one here.
# Usage: bench/run.sh BUILD-DIR
set -eu
build=${1:?usage: bench/run.sh BUILD-DIR}
echo "machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
echo "file system of TMPDIR (${TMPDIR:-/tmp}): $(df -T "${TMPDIR:-/tmp}" | awk 'NR==2 {print $2}')"
echo
"$build/bench/bench_db" "$build/bin"

echo
if [ "$(id -u)" = 0 ] && [ -f "$build/guest/root.img" ] &&
   virsh -c "${QUBES_VMM_URI:-qemu:///system}" version >/dev/null 2>&1; then
    "$build/bench/bench_lifecycle" "$build/bin" "$build/guest" "${LIFECYCLE_RUNS:-6}"
    echo
    BENCH_NETWORK=1 "$build/bench/bench_lifecycle" "$build/bin" "$build/guest" "${LIFECYCLE_RUNS:-6}"
    echo
    "$build/bench/bench_dispvm" "$build/bin" "$build/guest" "${DISPVM_RUNS:-10}"
    echo
    BENCH_NETWORK=1 "$build/bench/bench_dispvm" "$build/bin" "$build/guest" "${DISPVM_RUNS:-10}"
    echo
    "$build/bench/bench_qrexec" "$build/bin" "$build/guest" "${QREXEC_RUNS:-10}"
    echo
    "$build/bench/bench_hosts" "$build/bin" "$build/guest" "$(cd "$(dirname "$0")/.." && pwd)/mk/host2-up.sh" \
        "${HOSTS_RUNS:-5}"
else
    echo "lifecycle, DispVMs, qrexec: skipped (needs root, make vmm-up and make guest)"
fi
