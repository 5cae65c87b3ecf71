/* qvm-clone: a new VM made from a halted one.
 *
 * The clone is of the source's class (a clone of a template is a
 * template) and is the source's record with an identity of its own:
 *
 *   - new: qid, name, dir_path ($BASE/<class dir>/NEW, where its files
 *     are), conf_file (NEW.conf), uuid, netid (a NetVM or ProxyVM), and
 *     mac, which goes back to None: the MAC is regenerated from the qid;
 *   - as a new VM has them, since the original did not clone them either:
 *     installed_by_rpm, internal, autostart and debug are False (the
 *     package manager did not install the clone, and it is nobody's
 *     hidden helper); R2's backup_* bookkeeping of the source is left out;
 *   - everything else is the source's, in its order: the original's
 *     cloned attributes (kernel, netvm, memory, maxmem, kernelopts,
 *     services, vcpus, pcidevs, include_in_backups, label, default_user,
 *     qrexec_timeout, dispvm_netvm and the uses_default_* flags; drive,
 *     timezone, qrexec_installed, guiagent_installed and
 *     seamless_gui_mode of an HVM), its template, its image names and
 *     the attributes this project keeps without knowing them.
 *
 * Its files are copies of the source's: the root image of a VM with a root
 * of its own (not a template-based one's, which is its template's), the
 * private image, the files of its own kernel/ directory, each sparse, by
 * reflink where the file system offers it (storage_copy_sparse_progress),
 * and its firewall rules (a volatile image is made at every start).
 *
 * A running source is refused: its disks may change while they are
 * copied. A template whose children run is halted itself, and its root
 * image is only read by them: it is cloned. In offline mode every VM reads
 * as halted, as everywhere.
 *
 * Three steps, so that no lock is held during a long copy:
 *   1. under the read lock: the checks (names, class, -p, the source
 *      halted) and the list of the source's files with their identity
 *      (device, inode, size, modification time);
 *   2. no lock: the copies, into NEW.cloning-PID beside the directory the
 *      clone gets;
 *   3. under the write lock: the checks again, and that the source's
 *      files are those listed in step 1, unchanged (a VM started during
 *      the copy has written to them); then the record, the firewall rules,
 *      the directory renamed into place and the save.
 * A failure at any step (a refusal, a full disk, an interruption) leaves no
 * record and no directory. A clone killed during step 2 leaves its
 * NEW.cloning-PID directory, and nothing else. */
#ifndef QUBES_CLONE_H
#define QUBES_CLONE_H

#include <signal.h>
#include <stdio.h>

#include "error.h"

struct qubes;
struct qvm;

/* The time between two progress lines of one copy, by default. */
#define CLONE_PROGRESS_MS 2000

struct qvm_clone_opts {
    const char *src;            /* the VM cloned */
    const char *name;           /* the clone's name */
    /* -p: the directory the clone's files go to. A VM's files are always in
     * $BASE/<class dir>/NAME here (dir_path is never used), so this is
     * accepted only when it is that directory; NULL: that directory. */
    const char *dir;
    FILE *progress;             /* "--> ..." lines, NULL for none */
    /* The time between two lines of one copy; 0: CLONE_PROGRESS_MS;
     * negative: a line at every step of STORAGE_COPY_STEP bytes. */
    long progress_ms;
    /* When it becomes nonzero (a signal handler sets it), a copy under way
     * stops and nothing is cloned. NULL: never. */
    const volatile sig_atomic_t *cancel;
};

/* Makes the clone; takes the database's locks itself (call it with none
 * held), and leaves it unlocked. *out is the clone's record in q->coll. */
int qubes_vm_clone(struct qubes *q, const struct qvm_clone_opts *o, struct qvm **out,
                   struct qerr *err);

#endif
