# Shared by the shell tests in tests/t/: TAP output and a scratch database.
# Each test runs the tools of the sanitizer build (make check sets the
# paths; run alone, a test falls back to build/san/).

top=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${QUBES_TEST_BIN:-$top/build/san/bin}
UNIT=${QUBES_TEST_UNIT:-$top/build/san/tests}
HELPERS=${QUBES_TEST_HELPERS:-$top/build/san/helpers}
FIXTURES=${QUBES_TEST_FIXTURES:-$top/../shared/fixtures}
CORPUS=$top/tests/corpus
export PATH="$BIN:$PATH"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}

# A private scratch area per test file, removed at exit.
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/qubes-test.XXXXXX")
trap 'rm -rf "$SCRATCH"' EXIT
# QEMU (user libvirt-qemu) passes through to the VM directories below.
chmod 0711 "$SCRATCH"
export QUBES_BASE_DIR="$SCRATCH/base" QUBES_RUN_DIR="$SCRATCH/run"
# Nothing in the database tests may need a hypervisor: an address nobody
# answers makes any attempt visible as an error.
export QUBES_VMM_URI="qemu+unix:///system?socket=$SCRATCH/no-such-libvirt-sock"
unset QUBES_OFFLINE QUBES_DB_LOCK_FD
mkdir -p "$QUBES_BASE_DIR"

_tap_n=0
_tap_failed=0

ok() {  # ok STATUS NAME: STATUS 0 passes
    _tap_n=$((_tap_n + 1))
    if [ "$1" -eq 0 ]; then
        echo "ok $_tap_n - $2"
    else
        echo "not ok $_tap_n - $2"
        _tap_failed=$((_tap_failed + 1))
    fi
}

is() {  # is GOT EXPECTED NAME
    if [ "$1" = "$2" ]; then
        ok 0 "$3"
    else
        ok 1 "$3"
        printf '#   got:      %s\n#   expected: %s\n' "$1" "$2"
    fi
}

like() {  # like TEXT SUBSTRING NAME
    case "$1" in
        *"$2"*) ok 0 "$3" ;;
        *) ok 1 "$3"; printf '#   text:     %s\n#   expected to contain: %s\n' "$1" "$2" ;;
    esac
}

diag() { echo "# $*"; }

# run CMD...: sets $out (stdout+stderr) and $rc.
run() {
    out=$("$@" 2>&1)
    rc=$?
}

done_testing() {
    echo "1..$_tap_n"
    [ "$_tap_failed" -eq 0 ]
}

# lscol OUTPUT VM HEADER: the cell of VM's row under HEADER.
lscol() {
    printf '%s\n' "$1" | awk -F'|' -v vm="$2" -v h="$3" '
        { for (i = 1; i <= NF; i++) { f[i] = $i; gsub(/^ +| +$/, "", f[i]) } }
        f[1] == "name" { for (i = 1; i <= NF; i++) if (f[i] == h) c = i; next }
        { n = f[1]; gsub(/[][{}]/, "", n) } n == vm && c { print f[c] }'
}
# What qvm-ls -k shows of a property: qvm-prefs's value, * for the default.
kcell() {
    v=$(qvm-prefs -g "$1" "$2" 2>/dev/null) || { echo n/a; return; }
    case $v in *" (default)") echo "*${v% (default)}" ;; *) echo "$v" ;; esac
}

# A fresh database holding the original's fixture.
use_fixture() {
    cp "$FIXTURES/qubes-r2.xml" "$QUBES_BASE_DIR/qubes.xml"
}
