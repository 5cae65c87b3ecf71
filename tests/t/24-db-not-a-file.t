#!/bin/sh
# qubes.xml that is not a plain file of a sane size: a FIFO, a device, a
# symbolic link, a file too large or with too many attributes on one
# element. Each is refused at once with an error naming the file and what
# is wrong; nothing is written (a symlink's target stays as it was).
. "$(dirname "$0")/../lib.sh"

db=$QUBES_BASE_DIR/qubes.xml
# refused NAME EXPECT CMD...: the command fails within 10 s, exit 1, with
# one error line naming qubes.xml and EXPECT.
refused() {
    name=$1 expect=$2
    shift 2
    t0=$(date +%s)
    out=$(timeout 10 "$@" 2>&1 </dev/null)
    rc=$?
    is "$rc" 1 "$name: refused (exit 1)"
    like "$out" "$db" "$name: the error names the file"
    like "$out" "$expect" "$name: and says what is wrong"
    ok "$([ $(($(date +%s) - t0)) -lt 10 ]; echo $?)" "$name: at once"
}

mkfifo "$db"
refused "a FIFO" "not a regular file (a FIFO)" qvm-ls --raw-list
refused "a FIFO, for writing" "not a regular file (a FIFO)" qvm-prefs -s banking label blue
rm -f "$db"

if mknod "$db" c 1 5 2>/dev/null; then     # /dev/zero
    refused "a character device" "not a regular file (a character device)" qvm-ls --raw-list
    rm -f "$db"
else
    ok 0 "# SKIP mknod needs root"
fi

# A symbolic link: refused, and a save cannot replace it by a file.
use_fixture
mv "$db" "$SCRATCH/real.xml"
ln -s "$SCRATCH/real.xml" "$db"
sum=$(sha256sum < "$SCRATCH/real.xml")
refused "a symbolic link" "is a symbolic link" qvm-ls --raw-list
refused "a symbolic link, for writing" "is a symbolic link" qvm-prefs -s banking label blue
ok "$([ -L "$db" ] && [ "$(sha256sum < "$SCRATCH/real.xml")" = "$sum" ]; echo $?)" \
   "the link and its target are left as they were"
rm -f "$db"
ln -s /dev/zero "$db"
refused "a link to /dev/zero" "is a symbolic link" qvm-ls --raw-list
rm -f "$db"

# Too large: refused before it is read, whatever it holds.
head -c $((16 * 1048576 + 1)) /dev/zero | tr '\0' ' ' > "$db"
refused "a file over 16 MiB" "more than a database may be" qvm-ls --raw-list
rm -f "$db"

# Too many attributes on one element: refused before the parser sees them
# (libxml2 compares each attribute with all before it).
awk 'BEGIN {
    printf "<QubesVmCollection default_template=\"None\" default_netvm=\"None\" "
    printf "default_fw_netvm=\"None\" updatevm=\"None\" clockvm=\"None\" default_kernel=\"None\">\n"
    printf "<QubesAppVm qid=\"1\" name=\"work\" label=\"red\" template_qid=\"none\" netvm_qid=\"none\""
    for (i = 0; i < 200000; i++) printf " x%d=\"v\"", i
    printf "/>\n</QubesVmCollection>\n"
}' > "$db"
refused "200,000 attributes on one VM" ":2: <QubesAppVm> has more than 256 attributes" \
        qvm-ls --raw-list
awk 'BEGIN {
    printf "<QubesVmCollection default_template=\"None\" default_netvm=\"None\" "
    printf "default_fw_netvm=\"None\" updatevm=\"None\" clockvm=\"None\" default_kernel=\"None\">\n"
    printf "<QubesAppVm qid=\"1\" name=\"work\" label=\"red\" template_qid=\"none\" netvm_qid=\"none\""
    for (i = 0; i < 240; i++) printf " x%d=\"a=b>c\"", i
    printf "/>\n</QubesVmCollection>\n"
}' > "$db"
run qvm-prefs -s work label blue
is "$rc" 0 "245 attributes on a VM, with = and > in their values, still load and save"
is "$(grep -o ' x[0-9]*=' "$db" | wc -l)" 240 "and every one of them is kept"
done_testing
