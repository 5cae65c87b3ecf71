#!/bin/sh
# Hostile VM names given on the command line: qvm-create and qvm-prefs must
# refuse each one with its error before anything reaches the file system,
# from an empty base (no qubes.xml) and from the R2 fixture alike.
. "$(dirname "$0")/../lib.sh"

db=$QUBES_BASE_DIR/qubes.xml
outf=$SCRATCH/stdout
errf=$SCRATCH/stderr
# The tools run from here: a name that reached a shell would leave its
# traces in the current directory as well as in the base.
work=$SCRATCH/cwd
mkdir -p "$work"

snapshot() {
    (cd "$QUBES_BASE_DIR" && find . -printf '%p %y %s %m %i %T@\n' | LC_ALL=C sort)
    sha256sum "$db" 2>/dev/null | cut -d' ' -f1
    (cd "$work" && find . | LC_ALL=C sort)
}

unchanged() {  # unchanged BEFORE AFTER NAME
    if [ "$1" = "$2" ]; then
        ok 0 "$3"
    else
        ok 1 "$3"
        printf '%s\n' "$1" >"$SCRATCH/before"
        printf '%s\n' "$2" >"$SCRATCH/after"
        diff "$SCRATCH/before" "$SCRATCH/after" | sed 's/^/#   /'
    fi
}

lines() {
    awk 'END { print NR }' "$1"
}

# base_empty / base_fixture: a fresh base directory.
base_empty() {
    rm -rf "$QUBES_BASE_DIR"
    mkdir -p "$QUBES_BASE_DIR"
}
base_fixture() {
    base_empty
    use_fixture
}

# refused LABEL EXPECT PREFIX CMD...: CMD fails with status 1, one stderr
# line "PREFIX: error: ..." holding EXPECT, no sanitizer report, and the
# base directory (and the working directory) exactly as before.
refused() {
    label=$1 expect=$2 prefix=$3
    shift 3
    before=$(snapshot)
    (cd "$work" && "$@") >"$outf" 2>"$errf"
    rc=$?
    after=$(snapshot)

    if [ "$rc" -eq 1 ] && ! grep -q -e 'Sanitizer' -e 'runtime error' "$errf"; then
        s=0
    else
        s=1
    fi
    ok $s "$label: exits 1 without a sanitizer report"
    [ $s -eq 0 ] || { diag "exit status $rc"; sed 's/^/#   /' "$errf" | head -20; }

    nl=$(lines "$errf")
    is "$nl" 1 "$label: one error line"
    [ "$nl" = 1 ] || sed 's/^/#   | /' "$errf" | head -20

    s=1
    case "$(cat "$errf")" in
        "$prefix: error: "*"$expect"*) s=0 ;;
    esac
    ok $s "$label: refused with its error"
    [ $s -eq 0 ] || { diag "expected: $prefix: error: ...$expect..."; sed 's/^/#   got: /' "$errf" | head -5; }

    unchanged "$before" "$after" "$label: base directory unchanged"
    found=$(find "$SCRATCH" -name pwned)
    is "$found" "" "$label: no file named pwned"
}

# create_refused BASE LABEL EXPECT NAME, on a fresh base of that kind.
create_refused() {
    base_$1
    refused "qvm-create $2 ($1 base)" "$3" qvm-create \
        "$BIN/qvm-create" --offline-mode -l red -H -- "$4"
}

NAMECHARS="only letters, digits, '_' and '-' are allowed"
A32=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa

for base in empty fixture; do
    create_refused $base '""' "invalid VM name '': a name cannot be empty" ""
    create_refused $base 1abc "invalid VM name '1abc': must start with a letter" 1abc
    create_refused $base ../etc "invalid VM name '../etc': must start with a letter" ../etc
    create_refused $base a/b "invalid VM name 'a/b': $NAMECHARS" a/b
    create_refused $base '"a b"' "invalid VM name 'a b': $NAMECHARS" "a b"
    create_refused $base '32 x a' "invalid VM name '$A32': longer than 31 characters" "$A32"
    create_refused $base none "invalid VM name 'none': reserved word" none
    create_refused $base TRUE "invalid VM name 'TRUE': reserved word" TRUE
    create_refused $base dom0 "invalid VM name 'dom0': reserved for the admin VM" dom0
    create_refused $base -x "invalid VM name '-x': must start with a letter" -x
    create_refused $base a.b "invalid VM name 'a.b': $NAMECHARS" a.b
    create_refused $base väinö "invalid VM name 'väinö': $NAMECHARS" väinö
    create_refused $base '$(touch pwned)' "invalid VM name '\$(touch pwned)': must start with a letter" \
        '$(touch pwned)'
    create_refused $base '`touch pwned`' "invalid VM name '\`touch pwned\`': must start with a letter" \
        '`touch pwned`'
    create_refused $base 'a;b' "invalid VM name 'a;b': $NAMECHARS" 'a;b'
    create_refused $base 'a<newline>b' "$NAMECHARS" 'a
b'
    create_refused $base 'a<tab>b' "$NAMECHARS" "$(printf 'a\tb')"
    create_refused $base disp7 "invalid VM name 'disp7': names disp<N> are kept for DispVMs" disp7

    # Control: a valid name goes through, so the checks above can fail.
    base_$base
    before=$(snapshot)
    (cd "$work" && "$BIN/qvm-create" --offline-mode -l red -H -- ok-name_1) >"$outf" 2>"$errf"
    rc=$?
    after=$(snapshot)
    is "$rc" 0 "qvm-create ok-name_1 ($base base): a valid name is accepted"
    [ "$rc" -eq 0 ] || sed 's/^/#   /' "$errf"
    if [ "$before" != "$after" ] && [ -d "$QUBES_BASE_DIR/appvms/ok-name_1" ]; then s=0; else s=1; fi
    ok $s "qvm-create ok-name_1 ($base base): the VM and its directory exist"
    "$BIN/qvm-ls" --offline-mode --raw-list >"$outf" 2>"$errf"
    grep -qx ok-name_1 "$outf"
    ok $? "qvm-create ok-name_1 ($base base): qvm-ls lists it"
done

# ---- renaming through qvm-prefs ----

rename_refused() {  # LABEL EXPECT VALUE
    refused "qvm-prefs -s test-work name $1" "$2" qvm-prefs \
        "$BIN/qvm-prefs" --offline-mode -s test-work name "$3"
}

base_fixture
rename_refused ../x "name: invalid VM name '../x': must start with a letter" ../x
rename_refused a/b "name: invalid VM name 'a/b': $NAMECHARS" a/b
rename_refused '""' "name: invalid VM name '': a name cannot be empty" ""
rename_refused dom0 "name: invalid VM name 'dom0': reserved for the admin VM" dom0
rename_refused None "name: invalid VM name 'None': reserved word" None
rename_refused '$(touch pwned)' "name: invalid VM name '\$(touch pwned)': must start with a letter" \
    '$(touch pwned)'
rename_refused banking "name: a VM named 'banking' already exists" banking
rename_refused disp12 "name: invalid VM name 'disp12': names disp<N> are kept for DispVMs" disp12

# Control: a valid new name is taken.
before=$(snapshot)
"$BIN/qvm-prefs" --offline-mode -s test-work name ok-name_2 >"$outf" 2>"$errf"
rc=$?
after=$(snapshot)
if [ "$rc" -eq 0 ] && [ "$before" != "$after" ]; then s=0; else s=1; fi
ok $s "qvm-prefs -s test-work name ok-name_2: a valid name is accepted"
run "$BIN/qvm-prefs" --offline-mode -g ok-name_2 name
is "$out" ok-name_2 "qvm-prefs -s test-work name ok-name_2: the VM answers to its new name"

done_testing
