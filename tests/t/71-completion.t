#!/bin/sh
# Bash completion (dist/bash-completion/qvm), run as bash runs it: the
# function `complete -p` names, with COMP_WORDS and COMP_CWORD set. Options
# come from each tool's --help; VM names from qvm-ls --raw-list offline
# (the hypervisor's address here answers nobody), from QUBES_BASE_DIR, by
# the qvm-ls beside a command given as a path; qvm-prefs property names and
# values, labels, files after -r; a corrupt qubes.xml gives nothing, silently.
. "$(dirname "$0")/../lib.sh"
COMP=$top/dist/bash-completion/qvm

if ! command -v bash >/dev/null 2>&1; then
    echo "1..0 # SKIP bash is not installed"
    exit 0
fi

# comp [NAME=VALUE]... WORD...: completes the last WORD (may be '') of the
# command line WORD..., in an environment with NAME=VALUE added; $out: the
# answers, sorted, on one line; $err: the error output.
comp() {
    out=$(bash -c '
        comp=$1
        shift
        while [[ $1 == [A-Z]*=* ]]; do
            export "$1"
            shift
        done
        . "$comp" || exit 3
        COMP_WORDS=("$@")
        COMP_CWORD=$(($# - 1))
        spec=$(complete -p "${1##*/}") || exit 4
        f=${spec#*-F }
        f=${f%% *}
        "$f" "$1" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
        [ ${#COMPREPLY[@]} -eq 0 ] || printf "%s\n" "${COMPREPLY[@]}"
    ' comp "$COMP" "$@" 2>"$SCRATCH/comp.err" | LC_ALL=C sort | tr '\n' ' ')
    out=${out% }
    err=$(cat "$SCRATCH/comp.err")
}

ms() { date +%s%3N; }

# Every tool has its completion.
missing=
for t in "$BIN"/*; do
    n=${t##*/}
    bash -c '. "$1" && complete -p "$2" >/dev/null 2>&1' sh "$COMP" "$n" || missing="$missing $n"
done
is "$missing" "" "every tool in the build has a completion registered"
ntools=$(ls "$top/orchestrator/tools" | grep -c '\.c$')
is "$(bash -c '. "$1"; complete -p' sh "$COMP" | grep -c '^complete -F _qvm_complete ')" "$ntools" \
   "the file registers one function for the $ntools tools"

qvm-create --offline-mode -q -l red -H work
qvm-create --offline-mode -q -l blue -H web
ok $? "two VMs created offline"

# VM names, read offline.
comp qvm-start w
is "$out" "web work" "qvm-start w: both VMs"
comp qvm-start wo
is "$out" "work" "qvm-start wo: only the one that matches"
comp qvm-start x
is "$out" "" "qvm-start x: nothing"
comp qvm-start d
is "$out" "" "dom0 is not offered as a VM to start"
comp qvm-run --source d
is "$out" "dom0" "but is as the source of qvm-run --source"
comp qvm-start wo
is "$err" "" "nothing on the error output"

# The hypervisor is never asked: lib.sh points QUBES_VMM_URI at a socket
# nobody answers, and QUBES_OFFLINE is not set.
t0=$(ms)
comp qvm-kill w
t1=$(ms)
diag "completion of VM names took $((t1 - t0)) ms (bash started included)"
is "$out|$err" "web work|" "names come without a hypervisor, and without a word on the error output"

# QUBES_BASE_DIR is the environment's.
QUBES_BASE_DIR=$SCRATCH/base2 qvm-create --offline-mode -q -l green -H wide
comp QUBES_BASE_DIR="$SCRATCH/base2" qvm-start w
is "$out" "wide" "the VMs of \$QUBES_BASE_DIR"

# A command given as a path: the qvm-ls beside it, whatever PATH says.
comp PATH=/usr/bin:/bin "$BIN/qvm-pause" w
is "$out" "web work" "a tool given as a path uses the qvm-ls beside it"

# Options, from --help.
run qvm-run --help
like "$out" "--no-auto" "qvm-run --help has --no-auto"
like "$out" "--nogui" "and --nogui"
comp qvm-run --no
is "$out" "--no-auto --nogui" "qvm-run --no: --no-auto and --nogui"
comp qvm-service -
like " $out " " --unset " "an alias named in a description (qvm-service --unset) is offered"
like " $out " " --version " "--version is offered"
comp qvm-run work -
is "$out" "" "after qvm-run's VM name, words are the command's"
comp qvm-create -m ''
is "$out" "" "an option's argument is not a VM (qvm-create -m)"

# qvm-prefs: property names and some values.
comp qvm-prefs -s work ''
like " $out " " netvm " "qvm-prefs -s VM: property names, netvm among them"
like " $out " " label " "label among them"
case " $out " in *" qid "*) r=1 ;; *) r=0 ;; esac
ok $r "properties that cannot be set (qid) are not offered after -s"
comp qvm-prefs -g work q
like " $out " " qid " "after -g they are"
comp qvm-prefs -s work net
is "$out" "netvm" "qvm-prefs -s VM net: netvm"
comp qvm-prefs -s work label b
is "$out" "black blue" "qvm-prefs -s VM label b: the labels"
comp qvm-prefs -s work netvm ''
is "$out" "default none web work" "netvm: VM names, none and default"
comp qubes-prefs -s default-t
is "$out" "default-template" "qubes-prefs: the global properties"
comp qvm-create -l gr
is "$out" "gray green" "qvm-create -l: the labels"

# Files after -r.
mkdir -p "$SCRATCH/imgs/dir-a"
: >"$SCRATCH/imgs/root-a.img"
comp qvm-create -r "$SCRATCH/imgs/ro"
is "$out" "$SCRATCH/imgs/root-a.img" "qvm-create -r: file names"
comp qvm-create -k "$SCRATCH/imgs/"
is "$out" "$SCRATCH/imgs/dir-a" "qvm-create -k: directories"
comp qvm-create --label=re
is "$out" "--label=red" "--label=VALUE as one word"

# qvm-host: its commands, then the registered hosts' names (offline).
comp qvm-host ''
is "$out" "add list remove" "qvm-host: its commands"
qvm-host -q add h2 qemu+tcp://127.0.0.2:16510/system && qvm-host -q add h3 qemu+tls://h3.example/system
comp qvm-host remove h
is "$out" "h2 h3" "qvm-host remove h: the registered hosts, not 'local'"
comp qvm-host add h
is "$out" "" "qvm-host add NAME: a new name, nothing offered"

# A corrupt database: nothing offered, nothing said.
mkdir -p "$SCRATCH/bad"
printf '<QubesVmCollection><QubesHVm name="work" qid="2"' >"$SCRATCH/bad/qubes.xml"
comp QUBES_BASE_DIR="$SCRATCH/bad" qvm-start w
is "$out|$err" "|" "a corrupt qubes.xml: no names and nothing on the error output"
comp QUBES_BASE_DIR="$SCRATCH/bad" qvm-prefs -s work ''
is "$out|$err" "|" "nor property names"
comp QUBES_BASE_DIR="$SCRATCH/missing" qvm-start ''
is "$out|$err" "|" "no database at all: the same"

done_testing
