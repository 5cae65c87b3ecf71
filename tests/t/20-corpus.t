#!/bin/sh
# Malformed and hostile databases (tests/corpus/NN-*.xml): each is refused
# with one error that names the problem (NN-*.expect), exit status 1, no
# crash or sanitizer report, and the file is left byte for byte as it was.
. "$(dirname "$0")/../lib.sh"
db=$QUBES_BASE_DIR/qubes.xml
n=0
for xml in "$CORPUS"/*.xml; do
    case_name=$(basename "$xml" .xml)
    expect=$(cat "${xml%.xml}.expect")
    cp "$xml" "$db"
    sum=$(sha256sum < "$db")
    n=$((n + 1))

    qvm-ls --offline-mode > "$SCRATCH/out" 2> "$SCRATCH/err"
    rc=$?
    err=$(cat "$SCRATCH/err")
    lines=$(wc -l < "$SCRATCH/err")
    if [ "$rc" = 1 ] && [ "$lines" = 1 ] && [ ! -s "$SCRATCH/out" ] &&
       case $err in "qvm-ls: error: "*"$expect"*) true ;; *) false ;; esac; then
        ok 0 "$case_name: refused with its error"
    else
        ok 1 "$case_name: refused with its error"
        diag "status $rc, $lines line(s) on stderr: $err"
        diag "expected one line containing: $expect"
    fi
    case $err in
        *AddressSanitizer*|*"runtime error"*|*LeakSanitizer*) ok 1 "$case_name: no sanitizer report" ;;
        *) ok 0 "$case_name: no sanitizer report" ;;
    esac

    qvm-prefs --offline-mode -s work memory 500 > "$SCRATCH/out" 2>&1
    rc2=$?
    ok "$([ "$rc2" = 1 ] && [ "$(sha256sum < "$db")" = "$sum" ]; echo $?)" \
       "$case_name: a change is refused and the file is untouched"
done
ok "$([ $n -ge 25 ]; echo $?)" "the corpus holds at least 25 cases ($n)"
done_testing
