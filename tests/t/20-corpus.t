#!/bin/sh
# Malformed and hostile databases (tests/corpus/NN-name.xml): every tool must
# refuse each one with exit status 1 and one error line that names the
# problem (the substring in NN-name.expect), without a sanitizer report, and
# must leave the file and the directory exactly as they were.
. "$(dirname "$0")/../lib.sh"

db=$QUBES_BASE_DIR/qubes.xml
outf=$SCRATCH/stdout
errf=$SCRATCH/stderr

# The state a failed command must not change: every entry under the base
# directory with its type, size, mode, inode and mtime, plus the checksum.
snapshot() {
    (cd "$QUBES_BASE_DIR" && find . -printf '%p %y %s %m %i %T@\n' | LC_ALL=C sort)
    sha256sum "$db" 2>/dev/null | cut -d' ' -f1
}

# lines FILE: number of lines, counting an unterminated last one.
lines() {
    awk 'END { print NR }' "$1"
}

# unchanged BEFORE AFTER NAME: two snapshots are equal (a diff if not).
unchanged() {
    if [ "$1" = "$2" ]; then
        ok 0 "$3"
    else
        ok 1 "$3"
        printf '%s\n' "$1" >"$SCRATCH/before"
        printf '%s\n' "$2" >"$SCRATCH/after"
        diff "$SCRATCH/before" "$SCRATCH/after" | sed 's/^/#   /'
    fi
}

sanitizer_report() {  # status 0 if FILE holds a sanitizer report
    grep -q -e 'Sanitizer' -e 'runtime error' "$1"
}

# check_refusal PREFIX EXPECT NAME: the last run ($rc, $outf, $errf) failed
# with status 1, no sanitizer report, nothing on stdout, and exactly one
# stderr line "PREFIX: error: ..." that contains EXPECT.
check_refusal() {
    prefix=$1 expect=$2 name=$3
    if [ "$rc" -eq 1 ] && ! sanitizer_report "$errf"; then s=0; else s=1; fi
    ok $s "$name: exits 1 without a sanitizer report"
    [ $s -eq 0 ] || { diag "exit status $rc"; sed 's/^/#   /' "$errf" | head -20; }

    err=$(cat "$errf")
    nl=$(lines "$errf")
    is "$nl" 1 "$name: one error line"
    [ "$nl" = 1 ] || sed 's/^/#   | /' "$errf" | head -20

    s=1
    case "$err" in
        "$prefix: error: "*"$expect"*) [ ! -s "$outf" ] && s=0 ;;
    esac
    ok $s "$name: rejected with its error"
    if [ $s -ne 0 ]; then
        diag "expected: $prefix: error: ...$expect..."
        sed 's/^/#   got: /' "$errf" | head -5
        [ -s "$outf" ] && diag "and stdout was not empty"
    fi
}

# ---- controls: the checks below can tell a success and a change ----

use_fixture
before=$(snapshot)
"$BIN/qvm-ls" --offline-mode >"$outf" 2>"$errf"
rc=$?
is "$rc" 0 "control: qvm-ls accepts the R2 fixture"
"$BIN/qvm-prefs" --offline-mode -s test-work memory 500 >"$outf" 2>"$errf"
rc=$?
after=$(snapshot)
if [ "$rc" -eq 0 ] && [ "$before" != "$after" ]; then s=0; else s=1; fi
ok $s "control: qvm-prefs -s on the fixture succeeds and the snapshot shows the change"

# ---- the corpus itself ----

n=0
for xml in "$CORPUS"/[0-9][0-9]-*.xml; do
    [ -e "$xml" ] || continue
    n=$((n + 1))
done
if [ "$n" -ge 35 ]; then s=0; else s=1; fi
ok $s "corpus holds at least 35 cases ($n)"

for xml in "$CORPUS"/[0-9][0-9]-*.xml; do
    [ -e "$xml" ] || continue
    stem=${xml%.xml}
    case=$(basename "$stem")
    case=${case#[0-9][0-9]-}
    exp_file=$stem.expect

    # The expectation: one non-empty line.
    if [ -f "$exp_file" ] && [ "$(lines "$exp_file")" = 1 ] && [ -n "$(cat "$exp_file")" ]; then
        s=0
    else
        s=1
    fi
    ok $s "$case: has a one-line .expect"
    expect=$(cat "$exp_file" 2>/dev/null)
    [ -n "$expect" ] || expect="(no expectation)"

    rm -rf "$QUBES_BASE_DIR"
    mkdir -p "$QUBES_BASE_DIR"
    cp "$xml" "$db"
    before=$(snapshot)

    # qvm-ls: refuses to list it.
    "$BIN/qvm-ls" --offline-mode >"$outf" 2>"$errf"
    rc=$?
    check_refusal qvm-ls "$expect" "$case: qvm-ls"
    case $case in
        *xxe* | *external*)
            if grep -q -e 'root:' "$errf" "$outf"; then s=1; else s=0; fi
            ok $s "$case: nothing of /etc/passwd in the output"
            ;;
    esac
    after=$(snapshot)
    unchanged "$before" "$after" "$case: file untouched by qvm-ls"

    # qvm-prefs -s: a writer must refuse it as well, and write nothing.
    "$BIN/qvm-prefs" --offline-mode -s somevm memory 500 >"$outf" 2>"$errf"
    rc=$?
    check_refusal qvm-prefs "$expect" "$case: qvm-prefs -s"
    after=$(snapshot)
    unchanged "$before" "$after" "$case: file untouched by qvm-prefs -s"
    cmp -s "$xml" "$db"
    ok $? "$case: file byte-for-byte the corpus file"
done

done_testing
