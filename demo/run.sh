#!/bin/sh
# The demo behind `make demo`: the database tools at work on a scratch
# QUBES_BASE_DIR, narrated. Usage: demo/run.sh BIN-DIR
set -eu
bin=${1:?usage: demo/run.sh BIN-DIR}
top=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$bin:$PATH"
export QUBES_BASE_DIR="$(mktemp -d /tmp/qubes-demo.XXXXXX)"
export QUBES_RUN_DIR="$QUBES_BASE_DIR/run"
# The VM lifecycle is not part of this demo yet: no hypervisor is needed.
export QUBES_OFFLINE=1
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$QUBES_BASE_DIR"' EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@" || true; }

say "A scratch database in $QUBES_BASE_DIR"
show qvm-create -l red --net -s sys-net
show qvm-create -l green --proxy -s sys-firewall
truncate -s 256M "$QUBES_BASE_DIR/base-root.img"
show qvm-create -l black --hvm-template -r "$QUBES_BASE_DIR/base-root.img" debian-hvm
show qvm-create -l blue -H -t debian-hvm work
show qvm-create -l red -H -t debian-hvm untrusted -m 400
show qubes-prefs -l

say "The first NetVM, ProxyVM and template became the defaults; qvm-ls shows the tree"
show qvm-ls

say "Properties are typed and follow the class rules"
show qvm-prefs -s work memory 800
show qvm-prefs -g work memory
show qvm-prefs -s work memory lots
show qvm-prefs -s work template sys-net
show qvm-prefs -s work netvm none
show qvm-prefs -l work

say "Names become paths, so a bad one never reaches the file system"
show qvm-create -l red -H '../etc'
show qvm-create -l red -H 'none'

say "A template with children cannot go; its children can"
show qvm-remove debian-hvm
show qvm-remove untrusted
ls "$QUBES_BASE_DIR/appvms"

say "Every save writes a new file and renames it over qubes.xml (atomic, fsync'ed)"
echo "inode before: $(stat -c %i "$QUBES_BASE_DIR/qubes.xml")"
show qvm-prefs -s work vcpus 1
echo "inode after:  $(stat -c %i "$QUBES_BASE_DIR/qubes.xml"), mode $(stat -c %a "$QUBES_BASE_DIR/qubes.xml")"

say "The original's qubes.xml (R2) loads, lists and saves as it was"
cp "$top/../shared/fixtures/qubes-r2.xml" "$QUBES_BASE_DIR/qubes.xml" 2>/dev/null ||
    { echo "(fixture not found beside the project: skipped)"; exit 0; }
show qvm-ls
show qvm-prefs -s banking label purple
grep -o '<QubesAppVm[^>]*name="banking"[^>]*>' "$QUBES_BASE_DIR/qubes.xml" | fold -w 100
echo
echo "Done. The scratch directory is removed (KEEP=1 keeps it)."
