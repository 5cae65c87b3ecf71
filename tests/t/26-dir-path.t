#!/bin/sh
# Where a VM's files are never comes from qubes.xml: its disks, layers,
# kernel and logs are in $BASE/<class dir>/NAME whatever dir_path says
# (a hostile one naming another directory is kept in the file, and ignored).
# On libvirt's test driver: starting, growing and listing touch nothing
# outside the VM's own directory.
. "$(dirname "$0")/../lib.sh"
export QUBES_VMM_URI=test:///default
B=$QUBES_BASE_DIR db=$B/qubes.xml
out_dir=$SCRATCH/outside
mkdir -p "$out_dir"
# What a hostile dir_path points at: files that must stay as they are.
for f in root.img private.img volatile.img victim.img; do
    head -c 65536 /dev/urandom > "$out_dir/$f"
done
state() { (cd "$out_dir" && find . -printf '%p %s %T@\n' | sort; cat ./* | sha256sum); }
before=$(state)

truncate -s 64M "$SCRATCH/root.img"
qvm-create -q -l black --hvm-template -r "$SCRATCH/root.img" tpl
qvm-create -q -l blue -H -t tpl kid
qvm-create -q -l green -H -r "$SCRATCH/root.img" solo
qvm-start -q --no-wait kid      # its first root layer (the test driver forgets the domain)
t0=$(stat -c %Y "$B/appvms/kid/volatile.img")
sed -i -e "s|dir_path=\"$B/appvms/kid\"|dir_path=\"$out_dir\"|" \
       -e "s|dir_path=\"$B/vm-templates/tpl\"|dir_path=\"$out_dir\"|" \
       -e "s|dir_path=\"$B/appvms/solo\"|dir_path=\"$out_dir\"|" \
       -e "/name=\"solo\"/ s|root_img=\"root.img\"|root_img=\"victim.img\"|" "$db"
grep -c "dir_path=\"$out_dir\"" "$db" | grep -qx 3
ok $? "three VMs now say their files are in $out_dir"
rm -f "$B/appvms/kid/private.img"

run qvm-prefs -g kid dir
is "$out" "$B/appvms/kid" "qvm-prefs shows the VM's own directory"
run qvm-prefs -g kid private_img
is "$out" "$B/appvms/kid/private.img" "and its images there"

sleep 1
run qvm-start --no-wait kid
is "$rc" 0 "a child with a hostile dir_path starts"
like "$out" "Creating private image $B/appvms/kid/private.img" \
     "its missing private image is made in its own directory"
ok "$([ "$(stat -c %Y "$B/appvms/kid/volatile.img")" -gt "$t0" ]; echo $?)" \
   "its root layer is made afresh there, over $B/vm-templates/tpl/root.img"

run qvm-grow-root solo 128M
run qvm-start --no-wait solo
like "$out" "$B/appvms/solo/victim.img" "a standalone VM looks for its root image in its own directory"

run qvm-grow-root tpl 128M
is "$rc" 0 "the template's root grows"
is "$(stat -c %s "$B/vm-templates/tpl/root.img")" 134217728 "its own root.img"

is "$(stat -c %a "$B/appvms/kid/volatile.img")" 600 "the root layer is mode 600: its writes are the VM's own"
is "$(state)" "$before" "nothing in the directory dir_path names was created, changed or removed"
grep -c "dir_path=\"$out_dir\"" "$db" | grep -qx 3
ok $? "and qubes.xml keeps the dir_path it had"

# A rename moves the VM's own directory and writes its dir_path anew.
qvm-create -q -l red -H -r "$SCRATCH/root.img" r2vm
sed -i "s|dir_path=\"$B/appvms/r2vm\"|dir_path=\"/var/lib/qubes/appvms/r2vm\"|" "$db"
run qvm-prefs -s r2vm name renamed
is "$rc" 0 "a VM whose dir_path names another base (a file from another host) is renamed"
test -f "$B/appvms/renamed/root.img" && test ! -e "$B/appvms/r2vm"
ok $? "its directory moved with it"
is "$(qvm-prefs -g renamed dir)" "$B/appvms/renamed" "and its dir is the new one"
grep -q "dir_path=\"$B/appvms/renamed\"" "$db"
ok $? "written back to qubes.xml"
done_testing
