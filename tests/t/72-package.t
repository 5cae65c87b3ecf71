#!/bin/sh
# The Debian packages (debian/), built from a copy of the tree as a host
# administrator would: dpkg-buildpackage -us -uc -b. Then what they hold
# (files, modes, dependencies), lintian, the systemd units verified against
# the unpacked tree, tmpfiles.d creating the directories with their owners
# and modes, the unpacked tools run in place (qvm-ls --offline-mode, the
# backends found beside them), a manual page read with man -l, and
# make install / make uninstall holding and removing the same files.
# Needs root and what `mk/deps.sh package` installs (make check does).
. "$(dirname "$0")/../lib.sh"
for t in dpkg-buildpackage dh lintian systemd-analyze systemd-tmpfiles man help2man git; do
    command -v $t >/dev/null 2>&1 || { echo "1..0 # SKIP no $t (mk/deps.sh package)"; exit 0; }
done
[ "$(id -u)" = 0 ] || { echo "1..0 # SKIP needs root (the build's dependencies, chown)"; exit 0; }
getent group libvirt-qemu >/dev/null || { echo "1..0 # SKIP no libvirt-qemu group (make vmm-up)"; exit 0; }
S=$SCRATCH
version=$(sed -n 's/^#define QUBES_VERSION "\(.*\)"/\1/p' "$top/orchestrator/tools/tool.h")

# The tree as git sees it (with files not yet committed), not build/.
mkdir -p "$S/src"
(cd "$top" && git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$S/src")
start=$(date +%s)
(cd "$S/src" && dpkg-buildpackage -us -uc -b) > "$S/build.log" 2>&1
rc=$?
is "$rc" 0 "dpkg-buildpackage -us -uc -b builds"
[ "$rc" = 0 ] || { tail -n 30 "$S/build.log" | sed 's/^/#   /'; done_testing; exit 1; }
diag "built in $(($(date +%s) - start)) s"
main=$S/qubes-orchestrator_${version}_amd64.deb
xl=$S/qubes-orchestrator-libxl_${version}_amd64.deb
guest=$S/qubes-orchestrator-guest_${version}_amd64.deb
ok "$([ -f "$main" ] && [ -f "$xl" ] && [ -f "$guest" ]; echo $?)" \
   "three packages, of version $version (the tools' --version): main, libxl, guest"

# What each holds: "MODE PATH" per file, without directories.
list() { dpkg-deb -c "$1" | awk '$1 !~ /^d/ {p = $6; sub(/^\./, "", p); print $1, p ($7 == "->" ? " -> " $8 : "")}'; }
tools=$(ls "$S/src/orchestrator/tools" | sed -n 's/\.c$//p' | sort)
ntools=$(echo "$tools" | wc -l)
L=$(list "$main")
missing=""
for t in $tools; do
    printf '%s\n' "$L" | grep -qx -- "-rwxr-xr-x /usr/bin/$t" || missing="$missing bin/$t"
    printf '%s\n' "$L" | grep -qx -- "-rw-r--r-- /usr/share/man/man1/$t.1.gz" || missing="$missing man/$t"
    printf '%s\n' "$L" | grep -q -- " /usr/share/bash-completion/completions/$t -> qvm\$" || missing="$missing completion/$t"
done
is "$missing" "" "every one of the $ntools tools: in /usr/bin (0755), a manual page (0644), a completion"
for f in /usr/lib/qubes-orchestrator/qubes-vmm-libvirt.so /lib/systemd/system/qubes-cleanup-dispvms.service \
         /lib/systemd/system/qubes-vm-autostart.service /lib/systemd/system/qubes-dispvm-preload.service \
         /usr/lib/tmpfiles.d/qubes-orchestrator.conf /usr/share/bash-completion/completions/qvm; do
    printf '%s\n' "$L" | grep -qx -- "-rw-r--r-- $f" || missing="$missing $f"
done
is "$missing" "" "the libvirt backend, the three units, tmpfiles.d and the completion, 0644"
printf '%s\n' "$L" | grep -qx -- "-rwxr-xr-x /usr/lib/qubes-orchestrator/qrexec-daemon-db"
is "$?" 0 "qrexec-daemon's database helper beside the backend, 0755"
is "$(list "$xl" | grep -v /usr/share/doc/)" "-rw-r--r-- /usr/lib/qubes-orchestrator/qubes-vmm-libxl.so" \
   "the libxl backend alone in its package"
xenpkg=$(dpkg -S '*/libxenlight.so.[0-9]*' 2>/dev/null | head -n 1 | cut -d: -f1)
like "$(dpkg-deb -f "$xl" Depends)" "${xenpkg:-libxenlight}" "which depends on the package of libxenlight ($xenpkg)"
G=$(list "$guest")
ok "$(for f in qubes-agent qrexec-client-vm qubes-dnsd; do
          printf '%s\n' "$G" | grep -qx -- "-rwxr-xr-x /usr/lib/qubes-orchestrator/guest/$f" || exit 1; done
      printf '%s\n' "$G" | grep -qx -- "-rwxr-xr-x /usr/share/qubes-orchestrator/guest/build-image.sh"; echo $?)" \
   "the guest's agent, client and DNS server in /usr/lib/qubes-orchestrator/guest, the builder in /usr/share"
deps=$(dpkg-deb -f "$main" Depends)
ok "$(for d in libvirt-daemon-system libvirt-daemon-driver-qemu qemu-system-x86 libnftables1 libxml2 libvirt0; do
          case $deps in *"$d"*) ;; *) echo "no $d" >&2; exit 1 ;; esac; done; echo 0)" \
   "the main package depends on libvirt's daemon and QEMU driver, QEMU, libnftables1, libxml2, libvirt0"
case $(printf '%s\n' "$L" "$G" | grep -v /usr/share/doc/ | grep -c libxl) in 0) r=0 ;; *) r=1 ;; esac
ok $r "and nothing of libxl outside its package"

# lintian: no error (warnings are listed).
out=$(cd "$S" && lintian --fail-on error ./*.changes 2>&1)
rc=$?
is "$rc" 0 "lintian finds no error"
[ "$rc" = 0 ] && [ -z "$out" ] || printf '%s\n' "$out" | head -n 20 | sed 's/^/#   /'

# Unpacked into a scratch root.
R=$S/root
for d in "$main" "$xl" "$guest"; do dpkg -x "$d" "$R"; done
# The host's units beside ours (the targets ours hang from), none replaced.
cp -rn /lib/systemd/system/. "$R/lib/systemd/system/" 2>/dev/null
out=$(cd "$R/lib/systemd/system" && systemd-analyze verify --root="$R" --man=no \
          qubes-cleanup-dispvms.service qubes-vm-autostart.service qubes-dispvm-preload.service 2>&1)
rc=$?
is "$rc" 0 "systemd-analyze verify accepts the three units"
[ "$rc" = 0 ] && [ -z "$out" ] || printf '%s\n' "$out" | head -n 10 | sed 's/^/#   /'
like "$(grep '^ExecStart=' "$R/lib/systemd/system/qubes-vm-autostart.service")" \
     "ExecStart=/usr/bin/qvm-start --autostart" "the autostart unit runs the packaged qvm-start --autostart"
mkdir -p "$R/etc"
cp /etc/passwd /etc/group "$R/etc/"
systemd-tmpfiles --root="$R" --create "$R/usr/lib/tmpfiles.d/qubes-orchestrator.conf" 2>"$S/tmpfiles.err"
is "$?/$(stat -c '%a %U %G' "$R/var/lib/qubes" "$R/run/qubes" "$R/dev/shm/qubes" 2>&1 | tr '\n' ';')" \
   "0/750 root libvirt-qemu;750 root libvirt-qemu;750 root libvirt-qemu;" \
   "tmpfiles.d makes /var/lib/qubes, /run/qubes and /dev/shm/qubes: root's, group libvirt-qemu, 0750"
mkdir -p "$S/ctl" && dpkg-deb -e "$main" "$S/ctl"
like "$(cat "$S/ctl/postinst" 2>&1)" "--create qubes-orchestrator.conf" \
     "and the package's postinst runs it when it is installed"

# The unpacked tools, run in place: they find their backends beside them.
like "$("$R/usr/bin/qvm-ls" --version)" "hypervisor backends: libvirt, libxl" \
     "the unpacked qvm-ls finds both backends in its own tree"
"$R/usr/bin/qvm-create" --offline-mode -q -s -l red pkg-vm 2>"$S/create.err"
run "$R/usr/bin/qvm-ls" --offline-mode
is "$rc" 0 "the unpacked qvm-ls --offline-mode runs"
like "$out" "pkg-vm" "and lists the VM the unpacked qvm-create made"
page=$(MANWIDTH=80 man -l "$R/usr/share/man/man1/qvm-start.1.gz" 2>&1)
like "$page" "--autostart" "man -l of qvm-start's page shows its options"
ok "$(printf '%s\n' "$page" | grep -q '^FILES' && printf '%s\n' "$page" | grep -q '^ENVIRONMENT' &&
      printf '%s\n' "$page" | grep -q 'QUBES_BASE_DIR'; echo $?)" "with FILES and ENVIRONMENT (QUBES_BASE_DIR)"

# make install holds what the packages hold (but their docs); uninstall
# takes it away again.
I=$S/inst
make -C "$S/src" -s LIBXL=yes install DESTDIR="$I" PREFIX=/usr UNITDIR=/lib/systemd/system >"$S/install.log" 2>&1
is "$?" 0 "make install DESTDIR PREFIX=/usr installs"
pkg_files=$( (list "$main"; list "$xl"; list "$guest") | grep -v ' /usr/share/doc/\| /usr/share/lintian/' | sort)
inst_plain=$(cd "$I" && find . ! -type d | sed 's|^\.||' | sort)
pkg_plain=$(printf '%s\n' "$pkg_files" | awk '{print $2}' | sort)
is "$inst_plain" "$pkg_plain" "the same files as the packages (their /usr/share/doc and lintian overrides aside)" >"$S/same.tap"
head -n 1 "$S/same.tap"
grep -q '^not ok' "$S/same.tap" && { printf '%s\n' "$inst_plain" > "$S/inst.list"; printf '%s\n' "$pkg_plain" > "$S/pkg.list"
    diff "$S/inst.list" "$S/pkg.list" | sed 's/^/#   /'; }
make -C "$S/src" -s LIBXL=yes uninstall DESTDIR="$I" PREFIX=/usr UNITDIR=/lib/systemd/system >>"$S/install.log" 2>&1
is "$?/$(cd "$I" && find . ! -type d | wc -l)" "0/0" "make uninstall removes every one of them"
done_testing
