#!/bin/sh
# qvm-block end to end on the real libvirt daemon and two guests: an image
# file and a host block device (a loop device) hot-plugged into running VMs
# appear in the guest and go again; a source attached to one VM is refused
# to another; bad sources are refused. Needs root, `make vmm-up` and
# `make guest`.
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../e2e.sh"
V1=e2e-blk1-$$ V2=e2e-blk2-$$
LOOP=
cleanup() {
    for vm in $V1 $V2; do virsh -c "$QUBES_VMM_URI" destroy "$vm" >/dev/null 2>&1; done
    [ -n "$LOOP" ] && losetup -d "$LOOP" 2>/dev/null
    rm -rf "$SCRATCH"
}
trap cleanup EXIT

# Image files with known content: a marker at offset 0, 8 MiB, in a
# directory QEMU's user may pass through (like $SCRATCH).
IMG=$SCRATCH/img
mkdir "$IMG" && chmod 0711 "$IMG"
mkimg() {  # mkimg FILE MARKER
    printf '%s' "$2" > "$1" && truncate -s 8M "$1"
}
M1=marker-one-$$ M2=marker-two-$$ M3=marker-three-$$ M4=marker-four-$$
mkimg "$IMG/disk.img" "$M1"
# In the guest: wait for /sys/block/DEV, then the marker at its start and
# its read-only flag.
seen() {  # seen VM DEV LENGTH
    qvm-run -p "$1" "for i in \$(seq 100); do [ -e /sys/block/$2 ] && break; sleep 0.1; done
                     head -c $3 /dev/$2; echo; cat /sys/block/$2/ro" 2>&1
}
gone() {  # gone VM DEV: "gone" once the guest has no such disk
    qvm-run -p "$1" "for i in \$(seq 50); do [ -e /sys/block/$2 ] || break; sleep 0.1; done
                     [ -e /sys/block/$2 ] && echo present || echo gone" 2>&1
}
attached() {  # attached VM: "DEV MODE SOURCE" lines of qvm-block -l for VM
    qvm-block -l | awk -v vm="$1" '$1 == vm { print $2, $3, $4 }'
}
available() { qvm-block -l | sed -n '/^Available/,$p'; }

run qvm-create -l red -H -s -r "$GUEST/root.img" --kernel "$GUEST/kernel" $V1
is "$rc" 0 "two standalone VMs from the test guest"
qvm-create -l red -H -s -r "$GUEST/root.img" --kernel "$GUEST/kernel" $V2 >/dev/null
V2DIR=$(ls -d "$B"/*/$V2)

run qvm-block -a $V1 "$IMG/disk.img"
like "$out" "VM '$V1' is not running (Halted)" "a halted VM is refused"
run qvm-block -a no-such-vm "$IMG/disk.img"
like "$out" "'no-such-vm' does not exist" "so is a VM not in qubes.xml"
run qvm-block --offline-mode -a $V1 "$IMG/disk.img"
like "$out" "VMM operations disabled in offline mode" "-a refuses --offline-mode"

qvm-start -q --no-guid $V1 && qvm-start -q --no-guid $V2
is "$?" 0 "both boot"

# An image file, read-write.
run qvm-block -a $V1 "$IMG/disk.img"
dev=$(echo "$out" | sed -n "s/^Attached .* as \(vd[b-z]\) (read-write)$/\1/p")
is "$rc/${dev:+dev}" "0/dev" "qvm-block -a attaches an image file to a running VM ($out)"
is "$(seen $V1 "$dev" ${#M1})" "$M1
0" "the guest sees a new disk $dev, holding the file's marker, writable"
qvm-run -p $V1 "printf guest-wrote | dd of=/dev/$dev bs=512 seek=1 conv=notrunc 2>/dev/null; sync" >/dev/null
is "$(dd if="$IMG/disk.img" bs=512 skip=1 count=1 2>/dev/null | head -c 11)" "guest-wrote" \
   "what the guest writes to it reaches the file"
is "$(attached $V1)" "$dev rw $IMG/disk.img" "qvm-block -l shows it: VM, frontend, rw, source"
is "$(stat -c %U "$IMG/disk.img")" "libvirt-qemu" "libvirt gave the file to QEMU's user for the time"

# One source, one VM.
run qvm-block -a $V2 "$IMG/disk.img"
is "$rc" 1 "the same file cannot be attached to a second VM"
like "$out" "$IMG/disk.img is attached to '$V1' as $dev: it cannot be attached to another VM" \
     "the refusal names the VM that has it"
ln -s disk.img "$IMG/alias.img"
run qvm-block -a $V2 --ro "$IMG/alias.img"
like "$out" "is attached to '$V1' as $dev" "nor under another name, nor read-only"
run qvm-block -a $V1 "$IMG/disk.img"
like "$out" "is already attached to '$V1' as $dev" "nor to the same VM twice"
mkimg "$IMG/second.img" "$M2"
run qvm-block -a $V1 "$IMG/second.img"
is "$rc" 0 "a second device goes into the same VM (it has free PCIe ports for it)"
dev2=$(attached $V1 | awk -v d="$dev" '$1 != d {print $1}' | head -n 1)
ok "$([ -n "$dev2" ] && [ "$dev2" != "$dev" ]; echo $?)" "under a frontend of its own ($dev2)"
run qvm-block -d $V1 "$dev2"
is "$rc" 0 "and goes again"

# Detach: gone from the guest, the hypervisor and the list.
run qvm-block -d $V1 "$dev"
is "$rc/$out" "0/Detached $dev from '$V1'" "qvm-block -d detaches it"
is "$(gone $V1 "$dev")" "gone" "the disk is gone from the guest"
is "$(attached $V1)" "" "and from qvm-block -l"
is "$(stat -c %U "$IMG/disk.img")" "root" "libvirt gave the file back to root"
run qvm-block -d $V1 "$dev"
like "$out" "VM '$V1' has no device $dev" "detaching it again says there is none"
run qvm-block -d $V1 vdb
like "$out" "vdb of VM '$V1' was not attached by qvm-block" "a VM's own disk is not detached"
run qvm-block -a $V2 "$IMG/disk.img"
is "$rc" 0 "once detached, the file may go to the other VM"
qvm-block -d $V2 >/dev/null

# Read-only: a file in another VM's directory may be read, not written.
mkimg "$V2DIR/extra.img" "$M3"
run qvm-block -a $V1 "$V2DIR/extra.img"
like "$out" "is in the directory of VM '$V2': it may only be attached read-only (--ro)" \
     "a file inside another VM's directory is refused writable"
run qvm-block -a $V1 "$V2DIR/extra.img" --ro
dev=$(echo "$out" | sed -n "s/^Attached .* as \(vd[b-z]\) (read-only)$/\1/p")
is "$rc/${dev:+dev}" "0/dev" "and attached read-only with --ro"
is "$(seen $V1 "$dev" ${#M3})" "$M3
1" "the guest reads it, and its /sys/block/$dev/ro is 1"
is "$(qvm-run -p $V1 "printf x | dd of=/dev/$dev conv=notrunc 2>/dev/null && echo wrote || echo refused")" \
   "refused" "a write from the guest fails"
is "$(head -c ${#M3} "$V2DIR/extra.img")" "$M3" "and the file is unchanged"
is "$(attached $V1)" "$dev ro $V2DIR/extra.img" "qvm-block -l shows it read-only"
run qvm-block -d $V1
is "$rc/$out" "0/Detached 1 device from '$V1'" "qvm-block -d VM detaches every device it attached"
is "$(gone $V1 "$dev")" "gone" "and the guest lets it go"

# The image directory: listed, and writable there.
mkdir -p "$B/images"
mkimg "$B/images/listed.img" "$M4"
like "$(available)" "$B/images/listed.img" "qvm-block -l lists the image files of \$QUBES_BASE_DIR/images"
run qvm-block -a $V1 "$B/images/listed.img"
dev=$(echo "$out" | sed -n "s/^Attached .* as \(vd[b-z]\) (read-write)$/\1/p")
is "$(seen $V1 "$dev" ${#M4})" "$M4
0" "one is attached writable (the one place under \$QUBES_BASE_DIR that may be)"
case $(available) in *listed.img*) r=1 ;; *) r=0 ;; esac
ok $r "and, attached, it is no longer listed as available"
qvm-block -d $V1 >/dev/null

# A host block device: a loop device over an image file.
mkimg "$IMG/dev.img" "$M2"
if LOOP=$(losetup -f --show "$IMG/dev.img" 2>/dev/null); then
    like "$(available)" "$LOOP" "qvm-block -l lists a host block device ($LOOP)"
    like "$(available)" "loop device of $IMG/dev.img" "saying what it is"
    run qvm-block -a $V1 "$IMG/dev.img"
    like "$out" "$IMG/dev.img is the backing file of $LOOP" "the file behind it is in use on the host"
    run qvm-block -a $V2 "$LOOP" --frontend vdf
    is "$rc/$out" "0/Attached $LOOP to '$V2' as vdf (read-write)" "a block device is attached, at the frontend asked for"
    # The guest names disks in the order they appear: vdc here.
    is "$(seen $V2 vdc ${#M2})" "$M2
0" "the guest sees the device's contents"
    is "$(attached $V2)" "vdf rw $LOOP" "qvm-block -l shows it"
    case $(available) in *"$LOOP "*) r=1 ;; *) r=0 ;; esac
    ok $r "and no longer lists it as available"
    run qvm-block -a $V1 --ro "$IMG/dev.img"
    like "$out" "is attached to '$V2' as vdf" "its backing file, read-only, is refused to another VM"
    run qvm-block -d $V2 vdf
    is "$rc" 0 "it is detached"
    is "$(gone $V2 vdc)" "gone" "and gone from the guest"
    losetup -d "$LOOP" && LOOP=
else
    ok 0 "loop devices # SKIP losetup cannot set one up here"
fi

# Bad sources.
run qvm-block -a $V1 "$IMG/missing.img"
like "$out" "$IMG/missing.img: No such file or directory" "a missing file is refused"
mkdir "$IMG/dir"
run qvm-block -a $V1 "$IMG/dir"
like "$out" "$IMG/dir is a directory" "a directory is refused"
mkfifo "$IMG/fifo"
run timeout 20 qvm-block -a $V1 "$IMG/fifo"
like "$out" "$IMG/fifo is a FIFO" "a FIFO is refused, without waiting for a writer"
ln -s fifo "$IMG/to-fifo"
run timeout 20 qvm-block -a $V1 "$IMG/to-fifo"
like "$out" "$IMG/fifo is a FIFO" "a link is resolved once and what it names is checked"
run qvm-block -a $V1 /dev/null
like "$out" "/dev/null is a character device" "a character device is refused"
mkdir -m 0777 "$IMG/open"
mkimg "$IMG/open/x.img" x
run qvm-block -a $V1 "$IMG/open/x.img"
like "$out" "any user may change $IMG/open" "a file others could replace after the check is refused"
run qvm-block -a $V1 "$B/qubes.xml"
like "$out" "may only be attached read-only" "qubes.xml is not attached writable"
mkdir -m 0700 "$SCRATCH/closed"
mkimg "$SCRATCH/closed/x.img" x
run qvm-block -a $V1 "$SCRATCH/closed/x.img"
like "$out" "QEMU runs as libvirt-qemu, which may not enter $SCRATCH/closed" \
     "a file QEMU's user cannot reach is named before libvirt is asked"
run qvm-block -a $V1 "$IMG/disk.img" --frontend vda
is "$rc" 2 "--frontend vda is a usage error (vdb to vdz)"
is "$(attached $V1)" "" "nothing was attached by the refused attempts"

# Offline: the host's side only.
run qvm-block --offline-mode -l
like "$out" "not known in offline mode" "-l --offline-mode says the attached devices are not known"
like "$out" "$B/images/listed.img" "and lists the image files"

qvm-kill $V2
run qvm-block -d $V2
like "$out" "VM '$V2' is not running" "-d of a halted VM is refused"

done_testing
