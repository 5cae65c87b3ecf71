# Shared by the end-to-end tests (tests/t/5x, 6x), after lib.sh: the real
# libvirt daemon and the test guest, or a skip; helpers about DispVMs.

# LeakSanitizer's stop-the-world now and then fails outright (a "fatal
# error") in tools whose libvirt client threads are exiting; leaks are
# checked by every other test, on the same code.
export ASAN_OPTIONS=detect_leaks=0
GUEST=${QUBES_TEST_GUEST:-$top/build/guest}
export QUBES_VMM_URI=${QUBES_E2E_URI:-qemu:///system}
if [ "$(id -u)" != 0 ] || [ ! -f "$GUEST/root.img" ] || ! virsh -c "$QUBES_VMM_URI" version >/dev/null 2>&1; then
    echo "1..0 # SKIP needs root, a libvirt daemon (make vmm-up) and the test guest (make guest)"
    exit 0
fi
B=$QUBES_BASE_DIR R=$QUBES_RUN_DIR

# Stops this test's DispVM service (its workers tear their DispVMs down),
# then destroys the domains of this test's run directory (domain names are
# host-wide: those of other databases are left alone), and removes its
# DispVM templates' files in /dev/shm/qubes.
# After a failure, the last lines of every guest's console and qrexec log of
# this run go to standard error (prove shows it), before the scratch
# directory that holds them goes.
show_logs_on_failure() {
    [ "${_tap_failed:-0}" != 0 ] || return 0
    find "$QUBES_BASE_DIR" "$R" \( -name console.log -o -name qrexec.log \) -type f 2>/dev/null |
        sort | while read -r log; do
            echo "# ---- $log (last 20 lines)"
            tail -n 20 "$log" | sed 's/^/#   /'
        done >&2
}

destroy_ours() {
    show_logs_on_failure
    qubes-dvmd --stop >/dev/null 2>&1
    for d in $(virsh -c "$QUBES_VMM_URI" list --name 2>/dev/null); do
        [ -d "$R/vms/$d" ] && virsh -c "$QUBES_VMM_URI" destroy "$d" >/dev/null 2>&1
    done
    # The shared-memory files of this database's DispVM templates (their
    # RAM and savefile copies live in /dev/shm/qubes, outside SCRATCH), and
    # the link to the default one's savefile when it is one of them.
    for v in $(QUBES_OFFLINE=1 qvm-ls --raw-list 2>/dev/null); do
        case $v in *-dvm)
            case $(readlink /dev/shm/qubes/current-savefile 2>/dev/null) in
                "/dev/shm/qubes/$v".*) rm -f /dev/shm/qubes/current-savefile ;;
            esac
            rm -f "/dev/shm/qubes/$v".* ;;
        esac
    done
}

# The state column of VM $1 in qvm-ls (Running, Halted, ...).
state() {
    qvm-ls 2>/dev/null | awk -F'|' -v n="$1" '{v = $1; gsub(/[][{} ]/, "", v); s = $3; gsub(/ /, "", s)} v == n {print s}'
}

# DispVM records, running DispVM domains of ours, DispVM run directories.
disp_records() { qvm-ls --raw-list 2>/dev/null | grep -c '^disp[0-9]*$'; }
disp_domains() {
    n=0
    for d in $(virsh -c "$QUBES_VMM_URI" list --name 2>/dev/null); do
        [ -d "$R/vms/$d" ] && case $d in disp*) n=$((n + 1)) ;; esac
    done
    echo $n
}
leftovers() { echo "$(disp_records)/$(disp_domains)/$(ls "$R/vms" 2>/dev/null | grep -c '^disp')"; }
# The same once DispVMs whose service ended are torn down (that happens
# after the caller has its exit status): waits up to 10 s for none.
settled() {
    for i in $(seq 100); do [ "$(leftovers)" = "0/0/0" ] && break; sleep 0.1; done
    leftovers
}

# Kills process $1, then what it started, down the tree.
kill_tree() {
    local kids k
    kids=$(pgrep -P "$1")
    kill "$1" 2>/dev/null       # first: it must not go on once its children end
    for k in $kids; do kill_tree "$k"; done
}
# Waits for this shell's background jobs, at most $1 seconds: what still
# runs then (a guest that hangs) is killed with all it started, and $2
# says so with diag; the test's checks then fail instead of the test
# hanging. Returns 1 when it killed something.
wait_jobs() {
    local top=$$
    rm -f "$SCRATCH/.late"
    # The watchdog is no job of ours (wait would wait for it): it kills
    # what this shell still runs then, pipelines whole.
    ( (sleep "$1"; : > "$SCRATCH/.late"; for p in $(pgrep -P $top); do kill_tree "$p"; done) &
      echo $! > "$SCRATCH/.dog" )
    wait
    kill_tree "$(cat "$SCRATCH/.dog")"
    rm -f "$SCRATCH/.dog"
    [ -e "$SCRATCH/.late" ] || return 0
    rm -f "$SCRATCH/.late"
    diag "$2: still running after $1 s: killed"
    return 1
}

# The owner of FILE once libvirt is done with the domains that used it
# (it gives files back after our teardown, in its own time): up to 5 s
# for root, then whoever it is.
owner_back() {
    for i in $(seq 50); do [ "$(stat -c %U "$1")" = root ] && break; sleep 0.1; done
    stat -c %U "$1"
}

# The emulated devices of domain $1's QEMU, from its command line: each
# -device's driver, sorted, one line.
qemu_devices() {
    pid=$(cat "/run/libvirt/qemu/$1.pid" 2>/dev/null)
    [ -n "$pid" ] || { echo "no-qemu"; return; }
    tr '\0' '\n' < "/proc/$pid/cmdline" | sed -n 's/^{"driver":"\([^"]*\)".*/\1/p' |
        sort | tr '\n' ' '
}

# Status 0 when the device list $1 (qemu_devices) has disks but nothing USB.
no_usb() {
    case "$1" in *virtio-blk-pci*) ;; *) return 1 ;; esac
    case "$1" in *xhci* | *usb* | *ehci* | *uhci*) return 1 ;; esac
}

# The user QEMU of domain NAME runs as, then whether it runs in QEMU's
# seccomp sandbox: "libvirt-qemu sandbox" as `make vmm-up` sets libvirt up.
qemu_user() {
    pid=$(cat "/run/libvirt/qemu/$1.pid" 2>/dev/null)
    [ -n "$pid" ] || { echo "no-qemu"; return; }
    user=$(ps -o user= -p "$pid")
    case $(tr '\0' ' ' < "/proc/$pid/cmdline") in
        *"-sandbox on,"*) echo "$user sandbox" ;;
        *) echo "$user no-sandbox" ;;
    esac
}
