/* The library's front door for tools: configuration, the database handle,
 * the (lazy) hypervisor connection and the loaded collection, and the VM
 * operations the tools expose. A tool parses its options, calls these and
 * prints; everything another tool or a test needs lives here. */
#ifndef QUBES_QUBES_H
#define QUBES_QUBES_H

#include <stdbool.h>
#include <stdio.h>

#include "collection.h"
#include "config.h"
#include "db.h"
#include "error.h"
#include "power.h"
#include "vm.h"
#include "vmm.h"

/* The hypervisors of other hosts this process has talked to (hosts.h). */
#define QUBES_REMOTES_MAX 8
struct qubes_remote {
    char host[32];
    struct vmm vmm;
    char down[QERR_MSG_MAX];    /* why the host did not answer (asked once) */
};

struct qubes {
    struct qubes_config cfg;
    struct qubes_db db;
    struct vmm vmm;             /* this host's */
    struct qvm_collection *coll;
    struct qubes_remote remote[QUBES_REMOTES_MAX];
    size_t nremote;
};

/* Reads the configuration; `offline` forces offline mode (--offline-mode).
 * Opens nothing (but /dev/null on a standard descriptor that was closed):
 * the database is locked by the calls below, the hypervisor at its first
 * use. */
int qubes_open(struct qubes *q, bool offline, struct qerr *err);
void qubes_close(struct qubes *q);

/* Read lock, load, unlock: the collection stays loaded, the lock does not.
 * Both loads replace a collection loaded before (and its VM pointers). */
int qubes_load_for_reading(struct qubes *q, struct qerr *err);
/* Write lock (creating an empty database if `create`) and load; the lock is
 * held until qubes_save_and_unlock() or qubes_unlock(). */
int qubes_load_for_writing(struct qubes *q, bool create, struct qerr *err);
/* Validates the collection, saves it atomically, unlocks. */
int qubes_save_and_unlock(struct qubes *q, struct qerr *err);
void qubes_unlock(struct qubes *q);
/* Ends a write transaction, its one way out: rc 0 saves and unlocks;
 * QUBES_UNCHANGED unlocks and returns 0; a negative rc unlocks, changes
 * nothing on disk and is returned. -1 when the save fails. */
#define QUBES_UNCHANGED 1
int qubes_commit(struct qubes *q, int rc, struct qerr *err);

/* Looks a VM up by name with the error a user should see. */
struct qvm *qubes_find_vm(struct qubes *q, const char *name, struct qerr *err);
/* The hypervisor `vm` runs under: this host's (q->vmm), or that of the
 * host it lives on (hosts.h), set up once per process and host (not yet
 * connected: the first call connects). NULL with the error when its host
 * is not registered. */
struct vmm *qubes_vmm_of(struct qubes *q, const struct qvm *vm, struct qerr *err);
/* The same for the host named `host` (NULL, "" or "local": this one). */
struct vmm *qubes_host_vmm(struct qubes *q, const char *host, struct qerr *err);
/* Power state through the hypervisor (Halted in offline mode; dom0 always
 * Running), as power.h refines it. */
int qubes_vm_state(struct qubes *q, const struct qvm *vm, enum qvm_power *out,
                   struct qerr *err);
/* The same with the domain's details (id, CPU time, memory) in *info when
 * not NULL (the caller frees info->name). Running becomes Transient until
 * the VM's agent has answered. */
int qubes_vm_power(struct qubes *q, const struct qvm *vm, struct vmm_domain *info,
                   enum qvm_power *out, struct qerr *err);
/* The VM's state from a domain's details, as qubes_vm_power() gives it. */
enum qvm_power qubes_refine_power(const struct qubes *q, const struct qvm *vm,
                                  const struct vmm_domain *d);
/* A random (version 4) UUID. */
void qubes_new_uuid(char out[37]);
/* The directory the VM's files live in: $BASE/<class dir>/NAME, always.
 * dir_path in qubes.xml is kept for the original's tools and never used: a
 * file's word on where a VM's disks are would hand them any host file. */
int qubes_vm_dir(const struct qubes *q, const struct qvm *vm, char *out, size_t len,
                 struct qerr *err);
/* One of the VM's images: the file its attribute `attr` names (`dflt`
 * when unset or empty) in its directory (the loader admits only names relative to
 * it, without '..'; one that leaves it is an error here too). */
int qubes_vm_image(const struct qubes *q, const struct qvm *vm, const char *attr,
                   const char *dflt, char *out, size_t len, struct qerr *err);

/* Whether the VM's qrexec-daemon runs (it holds its qrexec.lock). */
bool qubes_qrexecd_alive(const struct qubes *q, const char *name);
/* Whether the VM runs: 1 or 0, -1 on error. The hypervisor's word (every
 * VM is Halted in offline mode), then its run directory's, which needs no
 * hypervisor: a qrexec-daemon holding its lock (it lives exactly as long
 * as the VM), a DispVM's owner alive. `why` (may be NULL) gets "is
 * Running", "has a qrexec-daemon (...)" and the like. */
int qubes_vm_running(struct qubes *q, const struct qvm *vm, char *why, size_t len,
                     struct qerr *err);
/* What the host has, for the limits of the database tools, which never
 * need the hypervisor: memory in MiB (MemTotal in /proc/meminfo) and online
 * CPUs. -1 with the error when it cannot be read. */
long qubes_host_memory_mib(struct qerr *err);
long qubes_host_cpus(struct qerr *err);

/* ---- qvm-create ---- */
struct qvm_create_opts {
    const char *name;
    const char *label;
    const char *template;       /* -t, NULL for the default */
    bool hvm, hvm_template, net, proxy, standalone, internal;
    long memory, vcpus;         /* 0: class default */
    const char *root_copy_from, *root_move_from;
    const char *kernel_dir;     /* --kernel: vmlinuz and initramfs, copied in */
    const char *host;           /* --host: a registered host (hosts.h); NULL
                                   or "local": this one */
};
/* Needs the write lock; creates the VM's files, adds its record, saves and
 * unlocks. On failure nothing is left behind (the lock is still held). */
int qubes_vm_create(struct qubes *q, const struct qvm_create_opts *o, struct qvm **out,
                    struct qerr *err);

/* ---- qvm-remove ---- */
/* Needs the write lock; saves and unlocks on success. Unless `just_db`,
 * the VM's directory goes and, for a DispVM template (T-dvm), its savefile
 * set (*had_savefile tells; may be NULL). */
int qubes_vm_remove(struct qubes *q, const char *name, bool just_db, bool *had_savefile,
                    struct qerr *err);

/* ---- renaming (qvm-prefs -s VM name NEW) ---- */
/* Needs the write lock; a transaction of its own. Everything named after
 * the VM follows it: the record (other VMs name it by qid), dir_path (the
 * new directory) and conf_file (NEW.conf), its directory (moved, with its
 * firewall rules and the conf file in it), its run directory. A template's
 * DispVM template T-dvm is renamed NEW-dvm with it, and the debug root
 * layers VMs based on it keep (qemu-img rebase -u) follow its root image.
 * A savefile set (dvmdata/) under the old or the new name is forgotten once
 * the rename is saved: its files name the old paths. Refused: dom0, a
 * DispVM, a VM installed by RPM, a running VM, a template while VMs based
 * on it run, a name taken by a VM, a directory or a file in the way. On
 * success the database is saved and unlocked; on failure nothing has
 * changed, on disk or in the collection, and the lock is still held. */
int qubes_vm_rename(struct qubes *q, struct qvm *vm, const char *name, struct qerr *err);

/* ---- qvm-prefs ---- */
/* Lists "name : value" lines of every property of the VM. */
int qubes_prefs_list(struct qubes *q, const struct qvm *vm, FILE *out, struct qerr *err);
/* A malloc'ed text of one property. */
char *qubes_prefs_get(struct qubes *q, const struct qvm *vm, const char *prop,
                      struct qerr *err);
/* Needs the write lock; checks type and class rules, changes the record.
 * `name` is not changed this way: a rename moves files, and is a
 * transaction of its own (qubes_vm_rename, or the call below). */
int qubes_prefs_set(struct qubes *q, struct qvm *vm, const char *prop, const char *value,
                    struct qerr *err);
/* qvm-prefs -s: one property changed and saved. Needs the write lock and
 * always ends the transaction: saved and unlocked on success, unlocked
 * with nothing changed on failure. */
int qubes_prefs_set_and_save(struct qubes *q, struct qvm *vm, const char *prop,
                             const char *value, struct qerr *err);

/* ---- qubes-prefs ---- */
/* dispvm-preload: how many DispVMs of a template wait preloaded, at most. */
#define QUBES_DISPVM_PRELOAD_MAX 16
int qubes_global_list(struct qubes *q, FILE *out, struct qerr *err);
char *qubes_global_get(struct qubes *q, const char *prop, struct qerr *err);
int qubes_global_set(struct qubes *q, const char *prop, const char *value, struct qerr *err);

#endif
