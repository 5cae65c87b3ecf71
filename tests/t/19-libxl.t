#!/bin/sh
# The libxl backend (qubes-vmm-libxl.so): its translation of a VM into a
# libxl domain configuration, compared with the reviewed JSON files in
# tests/libxl/; on this host without Xen, one clear error from every tool
# that needs the hypervisor; and a tree that still builds without xenlight.
. "$(dirname "$0")/../lib.sh"

plugin=$BIN/../lib/qubes-orchestrator/qubes-vmm-libxl.so
if [ ! -f "$plugin" ] || [ ! -x "$UNIT/test_libxl_config" ]; then
    echo "1..0 # SKIP the libxl backend was not built (no xenlight: install libxen-dev)"
    exit 0
fi

# The translation, as libxl's own JSON.
mkdir -p "$SCRATCH/json"
run "$UNIT/test_libxl_config" "$top/tests/libxl" "$SCRATCH/json"
is "$rc" 0 "libxl configurations from VM descriptions match tests/libxl/*.json"
echo "$out" | sed 's/^/# /'
if [ "$rc" != 0 ]; then
    for f in "$SCRATCH"/json/*.json; do
        diff -u "$top/tests/libxl/${f##*/}" "$f" | sed 's/^/# /'
    done
fi

run qvm-ls --version
like "$out" "hypervisor backends: libvirt, libxl" "--version lists the libxl backend"
case "$out" in *"libxl (not built"*) ok 1 "and not as missing" ;; *) ok 0 "and not as missing" ;; esac

# No Xen here: every tool that needs the hypervisor says so once.
if [ -e /proc/xen ] || [ -e /dev/xen/privcmd ]; then
    diag "this host runs Xen: the no-Xen checks do not apply"
else
    QUBES_OFFLINE=1 qvm-create -q -l black --hvm-template tpl
    QUBES_OFFLINE=1 qvm-create -q -l blue -H -t tpl work
    export QUBES_VMM_URI=libxl://
    msg="libxl://: cannot open libxl: this host does not run Xen (no /proc/xen or hypervisor interface)"
    run qvm-start work
    is "$rc" 1 "qvm-start with libxl:// and no Xen exits 1"
    is "$out" "qvm-start: error: cannot start 'work': $msg" "with one line saying why"
    run qvm-kill work
    is "$rc:$out" "1:qvm-kill: error: $msg" "qvm-kill: the same, once"
    run qvm-ls
    is "$rc" 0 "qvm-ls still lists the VMs"
    is "$(echo "$out" | grep -c 'warning:')" 1 "with one warning"
    like "$out" "qvm-ls: warning: power states unknown: $msg" "naming the cause"
    like "$(echo "$out" | grep ' work ')" "NA" "and the states as NA"
fi

# Without xenlight the tree still builds, and says what it lacks. A copy
# of the tree (what git tracks or would track), built with LIBXL=no.
mkdir "$SCRATCH/tree"
(cd "$top" && git ls-files -z --cached --others --exclude-standard) |
    (cd "$top" && tar --null -T - -cf -) | tar -C "$SCRATCH/tree" -xf -
run make -C "$SCRATCH/tree" -s -j2 LIBXL=no all
is "$rc" 0 "make LIBXL=no builds"
[ "$rc" = 0 ] || echo "$out" | sed 's/^/# /'
ls "$SCRATCH/tree/build/lib/qubes-orchestrator/" > "$SCRATCH/plugins" 2>&1
is "$(grep '\.so$' "$SCRATCH/plugins")" "qubes-vmm-libvirt.so" "with the libvirt backend only"
is "$(grep -c '^qrexec-daemon-db$' "$SCRATCH/plugins")" 1 "and qrexec-daemon's helper beside it"
run env -u QUBES_VMM_PLUGIN_DIR "$SCRATCH/tree/build/bin/qvm-ls" --version
like "$out" "libxl (not built: no xenlight at build time)" "and its --version says libxl was not built"

done_testing
