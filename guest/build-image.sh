#!/bin/sh
# Builds the test guest from Debian packages (a cloud kernel, busybox-static)
# and the agent: OUT/kernel/{vmlinuz,initramfs} and OUT/root.img (ext4, made
# by mke2fs -d: no root or loop device needed). Cached: does nothing when the
# outputs are newer than their inputs. CLIENT-BINARY is the guest's static
# qrexec-client-vm, DNSD-BINARY its static qubes-dnsd; installed (in
# PREFIX/share/qubes-orchestrator/guest), OUT-DIR alone takes those of
# PREFIX/lib/qubes-orchestrator/guest.
# Usage: guest/build-image.sh OUT-DIR [AGENT-BINARY CLIENT-BINARY DNSD-BINARY]
set -eu
usage="usage: build-image.sh OUT-DIR [AGENT-BINARY CLIENT-BINARY DNSD-BINARY]"
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?$usage}
if [ $# = 1 ]; then
    bins=$here/../../../lib/qubes-orchestrator/guest
    set -- "$1" "$bins/qubes-agent" "$bins/qrexec-client-vm" "$bins/qubes-dnsd"
fi
[ $# = 4 ] || { echo "$usage" >&2; exit 2; }
agent=$2 client=$3 dnsd=$4
for f in "$agent" "$client" "$dnsd"; do
    [ -x "$f" ] || { echo "build-image: $f: no such program" >&2; exit 1; }
done
mkdir -p "$out/kernel" "$out/debs"
out=$(cd "$out" && pwd)
agent=$(cd "$(dirname "$agent")" && pwd)/$(basename "$agent")
client=$(cd "$(dirname "$client")" && pwd)/$(basename "$client")
dnsd=$(cd "$(dirname "$dnsd")" && pwd)/$(basename "$dnsd")

if [ -f "$out/root.img" ] && [ -f "$out/kernel/initramfs" ] &&
   [ -z "$(find "$agent" "$client" "$dnsd" "$here/rootfs" "$here/initramfs" "$0" -newer "$out/root.img" 2>/dev/null)" ]; then
    exit 0
fi

# The packages: the kernel the cloud metapackage points at, and busybox.
kpkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)/\1/p' | head -n 1)
if [ -z "$kpkg" ]; then
    apt-get update -qq >&2
    kpkg=$(apt-cache depends linux-image-cloud-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)/\1/p' | head -n 1)
fi
[ -n "$kpkg" ] || { echo "build-image: no linux-image-cloud-amd64 in apt" >&2; exit 1; }
cd "$out/debs"
for p in "$kpkg" busybox-static; do
    ls "${p}"_*.deb >/dev/null 2>&1 || apt-get download "$p" >&2 2>/dev/null || apt-get download "$p" >&2
done
rm -rf "$out/x" && mkdir -p "$out/x"
for d in "$out"/debs/*.deb; do dpkg-deb -x "$d" "$out/x"; done
bb=$out/x/bin/busybox
kver=$(ls "$out/x/lib/modules" | head -n 1)
cp "$out/x/boot/vmlinuz-$kver" "$out/kernel/vmlinuz"

# First stage: busybox, the virtio modules, init.
ird=$out/initramfs.d
rm -rf "$ird" && mkdir -p "$ird/bin" "$ird/lib/modules"
cp "$bb" "$ird/bin/busybox"
cp "$here/initramfs/init" "$ird/init" && chmod 755 "$ird/init"
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk \
         virtio_console virtio_balloon failover net_failover virtio_net; do
    f=$(find "$out/x/lib/modules/$kver" -name "$m.ko*" | head -n 1)
    [ -n "$f" ] || { echo "build-image: module $m missing from $kpkg" >&2; exit 1; }
    case $f in *.xz) xz -dc "$f" > "$ird/lib/modules/$m.ko" ;; *) cp "$f" "$ird/lib/modules/$m.ko" ;; esac
done
(cd "$ird" && find . | "$bb" cpio -o -H newc 2>/dev/null | gzip -1) > "$out/kernel/initramfs.tmp"
mv "$out/kernel/initramfs.tmp" "$out/kernel/initramfs"

# The root file system: busybox with its applets, the agent, qrexec-client-vm,
# qubes-dnsd and the scripts of rootfs/bin, init. (/run/qubes is the agent's
# to make.)
rfs=$out/rootfs.d
rm -rf "$rfs" && mkdir -p "$rfs/bin" "$rfs/sbin" "$rfs/usr/bin" "$rfs/proc" "$rfs/sys" \
    "$rfs/dev" "$rfs/tmp" "$rfs/run" "$rfs/rw" "$rfs/root" "$rfs/etc" "$rfs/home/user"
cp "$bb" "$rfs/bin/busybox"
for a in $("$bb" --list); do
    [ "$a" = busybox ] || [ -e "$rfs/bin/$a" ] || ln -s busybox "$rfs/bin/$a"
done
cp "$here/rootfs/init" "$rfs/sbin/init" && chmod 755 "$rfs/sbin/init"
cp "$agent" "$rfs/usr/bin/qubes-agent"
cp "$client" "$rfs/usr/bin/qrexec-client-vm"
cp "$dnsd" "$rfs/usr/bin/qubes-dnsd"
cp "$here"/rootfs/bin/* "$rfs/usr/bin/" && chmod 755 "$rfs"/usr/bin/*
mkdir -p "$rfs/etc/qubes-rpc"
cp "$here"/rootfs/qubes-rpc/* "$rfs/etc/qubes-rpc/" && chmod 755 "$rfs"/etc/qubes-rpc/*
echo "root:x:0:0:root:/root:/bin/sh" > "$rfs/etc/passwd"
echo "test guest root file system" > "$rfs/etc/guest-release"
rm -f "$out/root.img.tmp"
mke2fs -q -t ext4 -d "$rfs" -L qubes-root "$out/root.img.tmp" 128M
mv "$out/root.img.tmp" "$out/root.img"
rm -rf "$out/x" "$ird" "$rfs"
echo "build-image: $out/root.img, $out/kernel/ (kernel $kver)" >&2
