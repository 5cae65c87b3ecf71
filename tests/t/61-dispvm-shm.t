#!/bin/sh
# Shared-memory DispVMs end to end: the dvm VM's RAM in a file on tmpfs, a
# savefile of device state only, DispVMs mapping the file copy-on-write.
# The file never changes, ten DispVMs at once keep their own memory, a
# regeneration leaves running DispVMs alone and the old file goes after the
# last of them (and one without a copy in shared memory is what DispVMs
# restore), and the full-image path still works when chosen. libvirt gives
# back the files it lent QEMU, and is never told of a backing file the
# template's record does not name. Needs root,
# `make vmm-up` and `make guest`.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../e2e.sh"
T=dst-$$
cleanup() {
    destroy_ours
    rm -rf "$SCRATCH" "/dev/shm/qubes/$T-dvm."*
}
trap cleanup EXIT
ram_files() { ls /dev/shm/qubes/ 2>/dev/null | grep "^$T-dvm\..*\.ram$" | sed 's|^|/dev/shm/qubes/|'; }
wait_domains() {  # wait_domains N: up to 60 s
    for i in $(seq 600); do [ "$(disp_domains)" -ge "$1" ] && break; sleep 0.1; done
}

qvm-create -q -l red --hvm-template -r "$GUEST/root.img" --kernel "$GUEST/kernel" $T
N=dst-net-$$
qvm-create -q -n -s -r "$GUEST/root.img" -k "$GUEST/kernel" -l red $N && qubes-prefs -s default-netvm $N
run qvm-create-default-dvm $T
is "$rc" 0 "qvm-create-default-dvm prepares a shared-memory savefile"
like "$out" "DispVM memory: shared memory" "and says which path it takes"
size=$(stat -c %s "$B/dvmdata/$T-dvm.savefile")
ok "$([ "$size" -lt $((16 * 1048576)) ]; echo $?)" "the savefile holds device state only ($((size / 1024)) KiB for a 512 MiB guest)"
is "$(ram_files | wc -l)" 1 "the guest's memory is one file in /dev/shm/qubes"
is "$(stat -c %a "$(ram_files)")/$(stat -c %a "/dev/shm/qubes/$T-dvm.savefile")" "600/600" \
   "no other user can read it, nor the copy of the savefile beside it"
old=$(ram_files)
sum0=$(md5sum < "$old")

# Ten at once: each writes its own value to its memory (a tmpfs file in the
# guest) and more memory besides, says so, and reads its value back later.
# Their memory is looked at once all ten have said so (restores run side by
# side: a domain can be there before its memory is).
for i in 1 2 3 4 5 6 7 8 9 10; do
    (echo "echo value-$i > /tmp/mine; dd if=/dev/urandom of=/tmp/fill bs=1M count=8 2>/dev/null
           echo written; sleep 15; cat /tmp/mine" |
     qfile-daemon-dvm -q -t $T qubes.VMShell dom0 DEFAULT > "$SCRATCH/m$i.out" 2> "$SCRATCH/m$i.err") &
done
wait_domains 10
for i in $(seq 600); do
    [ "$(cat "$SCRATCH"/m*.out 2>/dev/null | grep -c '^written$')" = 10 ] && break
    sleep 0.1
done
is "$(disp_domains)" 10 "10 DispVMs run at once"
stub=0
for d in $(virsh list --name); do
    case $d in disp*) [ -d "$R/vms/$d" ] || continue ;; *) continue ;; esac
    args=$(tr '\0' ' ' < "/proc/$(cat "/run/libvirt/qemu/$d.pid")/cmdline")
    case "$args" in
        *" -initrd "*) ;;
        *" -kernel $R/dispvm-boot-stub "*) stub=$((stub + 1)) ;;
    esac
done
is "$stub" 10 "their QEMUs were given the boot stub as their kernel, and no initramfs"
is "$(stat -c '%U:%G %a' "$B/dvmdata/$T-dvm.root.qcow2" "$B/dvmdata/$T-dvm.private.img" \
      "$B/vm-templates/$T/root.img" | tr '\n' ' ')" \
   "root:libvirt-qemu 640 root:libvirt-qemu 640 root:libvirt-qemu 640 " \
   "the files under their layers stay root's, read-only to QEMU (the set's images, the template's root)"
mem=$(qvm-ls --memory)
is "$(echo "$mem" | grep '^disp' | grep -c 'copy-on-write over')" 10 \
   "qvm-ls --memory shows each mapping the template's memory copy-on-write"
is "$(echo "$mem" | grep '^disp' | awk '$3 > 0 && $4 > 0' | wc -l)" 10 \
   "with memory private to it and memory shared with the template, for each"
diag "$(echo "$mem" | sed -n 1,3p | tr '\n' ';')"
wait_jobs 120 "ten DispVMs at once"
settled >/dev/null
bad=0
for i in 1 2 3 4 5 6 7 8 9 10; do
    [ "$(sed -n 2p "$SCRATCH/m$i.out")" = "value-$i" ] || { bad=$((bad + 1)); diag "m$i: $(cat "$SCRATCH/m$i.out" "$SCRATCH/m$i.err" | tr '\n' ' ')"; }
done
is "$bad" 0 "each read back its own value"
is "$(md5sum < "$old")" "$sum0" "the template's memory file is unchanged after they all wrote to their memory"
is "$(settled)" "0/0/0" "and they left nothing behind"
is "$(ram_files)" "$old" "the memory file of the current savefile stays"
# libvirt gives a domain's files back when it ends, all or none; the
# DispVM's own layers are gone by then, so it is told to leave them alone.
is "$(owner_back "$R/dispvm-boot-stub")" root "libvirt gave the boot stub back once they ended"

# A set whose root layer names another backing file than its template's
# root image (a header QEMU's user may write): libvirt is never told of
# that file, and no DispVM runs over it.
set_root="$B/dvmdata/$T-dvm.root.qcow2"
cp -p "$set_root" "$SCRATCH/set-root"
truncate -s 1M "$SCRATCH/other.img"
qemu-img rebase -u -F raw -b "$SCRATCH/other.img" "$set_root"
run sh -c "echo 'echo x' | qfile-daemon-dvm -q -t $T qubes.VMShell dom0 DEFAULT"
like "$out" "is not a layer over $B/vm-templates/$T/root.img, the root image of '$T' (it names '$SCRATCH/other.img'" \
     "a set whose root names another backing file is refused"
is "$rc/$(stat -c %U "$SCRATCH/other.img")/$(settled)" "1/root/0/0/0" \
   "the request fails, that file stays root's, nothing is left behind"
cp -p "$SCRATCH/set-root" "$set_root"

# Regeneration while two run: they keep working on the old file, which
# goes when the last of them ends.
for i in 1 2; do
    (echo 'echo before; sleep 20; echo after' |
     qfile-daemon-dvm -q -t $T qubes.VMShell dom0 DEFAULT > "$SCRATCH/r$i.out" 2>&1) &
done
wait_domains 2
run qvm-create-default-dvm -q $T
is "$rc" 0 "the savefile is made again while two DispVMs of the old one run"
new=$(ram_files | grep -v "^$old\$")
ok "$([ -n "$new" ] && [ -f "$new" ]; echo $?)" "with a new memory file"
ok "$([ -f "$old" ]; echo $?)" "and the old one stays while DispVMs map it"
is "$(echo 'echo fresh' | qfile-daemon-dvm -q -t $T qubes.VMShell dom0 DEFAULT 2>&1)" "fresh" \
   "a DispVM of the new savefile runs meanwhile"
wait_jobs 120 "two DispVMs of the old savefile"
is "$(cat "$SCRATCH/r1.out"; cat "$SCRATCH/r2.out")" "before
after
before
after" "the two DispVMs of the old savefile ran to their end"
settled >/dev/null
ok "$([ ! -e "$old" ]; echo $?)" "the old memory file is gone after the last of them ended"
is "$(ram_files)" "$new" "only the new one is left"

# Stray memory files: an old one nobody maps, and one of a preparation that
# died (named after the savefile was made; its dvm VM is not running).
cur=$(ram_files)
touch "/dev/shm/qubes/$T-dvm.1000000000.ram" "/dev/shm/qubes/$T-dvm.9000000000000000000.ram"
run qvm-cleanup-dispvms
like "$out" "Removed 2 unused memory file(s) of $T-dvm" "qvm-cleanup-dispvms removes stray memory files"
is "$(ram_files)" "$cur" "and keeps the current one"

# The full-image path, chosen.
qubes-prefs -s dispvm-memory full
run qvm-create-default-dvm $T
like "$out" "DispVM memory: full memory image" "with dispvm-memory full, the savefile holds the memory"
size=$(stat -c %s "$B/dvmdata/$T-dvm.savefile")
ok "$([ "$size" -gt $((16 * 1048576)) ]; echo $?)" "a full image ($((size / 1048576)) MiB)"
out=$(echo 'echo full-works' | qfile-daemon-dvm -t $T qubes.VMShell dom0 DEFAULT 2>&1)
like "$out" "(full memory image)" "a DispVM says it is restored from the full image"
like "$out" "full-works" "and works"
settled >/dev/null
is "$(owner_back "$B/vm-templates/$T/kernel/vmlinuz")/$(owner_back "$B/vm-templates/$T/kernel/initramfs")" \
   "root/root" "libvirt gave the template's kernel and initramfs back after it ended"
is "$(ram_files | wc -l)" 0 "the unused memory file went with the switch"
run qubes-prefs -s dispvm-memory sometimes
like "$out" "dispvm-memory: 'sometimes' is not auto, shared or full" "a bad dispvm-memory value is refused"
is "$(settled)" "0/0/0" "nothing is left behind"

# Made again with no copy in shared memory (dont-use-shm): DispVMs
# restore the new savefile, not the old one's copy left there.
qubes-prefs -s dispvm-memory shared
qvm-create-default-dvm -q $T
touch "$B/dvmdata/dont-use-shm"
qvm-create-default-dvm -q $T
is "$(echo 'echo new-set' | qfile-daemon-dvm -q -t $T qubes.VMShell dom0 DEFAULT 2>&1)" "new-set" \
   "a set made again with dont-use-shm: DispVMs restore it"
is "$(ls /dev/shm/qubes | grep -c "^$T-dvm\.savefile")/$(settled)" "0/0/0/0" \
   "the old set's copy in shared memory went; nothing is left behind"
rm "$B/dvmdata/dont-use-shm"

# Removing the dvm VM takes its savefile set and memory files with it.
qvm-create-default-dvm -q $T
run qvm-remove $T-dvm
like "$out" "and its DispVM savefile" "qvm-remove of the dvm VM removes its savefile set"
is "$(ls "$B/dvmdata" | grep -c "^$T-dvm\.")/$(ram_files | wc -l)/$(ls /dev/shm/qubes | grep -c "^$T-dvm\.savefile")" \
   "0/0/0" "no savefile, snapshot, stamp, memory file or shared-memory copy is left"
echo "1..$_tap_n"
[ "$_tap_failed" = 0 ]
