#include "teardown.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "../orchestrator/hosts.h"
#include "../orchestrator/runtime.h"
#include "../orchestrator/util.h"
#include "../orchestrator/vmguard.h"
#include "../storage/storage.h"
#include "restore.h"
#include "shmem.h"

/* After a DispVM that mapped `ram` is gone: that file (and older ones of
 * its dvm VM) go when no savefile or DispVM needs them any more. */
static void release_ram(const struct qubes_config *cfg, const char *ram)
{
    char dvm[QUBES_NAME_MAX + 1];
    struct dvmdata set;
    if (dispvm_ram_dvm(ram, dvm, sizeof dvm) == 0 && dvmdata_of(cfg, dvm, &set, NULL) == 0)
        dispvm_ram_gc(cfg, dvm, set.savefile, false);
}

/* Its run directory, and (`gc`) the memory file only it mapped. */
static void remove_runtime(const struct qubes_config *cfg, const char *rundir, const char *record,
                           bool gc)
{
    char ram[PATH_MAX];
    dispvm_ram_recorded(record, ram, sizeof ram);
    storage_remove_tree(rundir, NULL);
    if (ram[0] && gc)
        release_ram(cfg, ram);
}

/* Whether d's memory file may be one that no savefile needs: its set's
 * savefile is not the one it was restored from (or that is not known). */
static bool set_replaced(const struct dispvm_state *d)
{
    struct stat st;
    return !d->set_seen || stat(d->tpl->set.savefile, &st) < 0 || !qstat_same(&st, &d->set_st);
}

/* The record, and with it the firewall chains of its interface (host-wide
 * names, which a DispVM of the same dispid takes again only once it has a
 * record: under this lock too). Chains that cannot go are said, and left
 * to the next DispVM of the name, which replaces them. */
static void forget(struct qubes *q, struct qvm *vm, FILE *progress)
{
    struct qerr e;
    if (vmguard_down(q, vm, &e) < 0)
        qsay(progress, "warning: %s: its firewall chains stay: %s", vm->name, e.msg);
    qvm_collection_remove(q->coll, vm);
    qvm_free(vm);
}

static int drop_record(struct qubes *q, const char *name, struct qerr *err)
{
    if (qubes_load_for_writing(q, false, err) < 0)
        return -1;
    struct qvm *vm = qvm_collection_by_name(q->coll, name);
    bool ours = vm && vm->cls == QVM_DISP;
    if (ours)
        forget(q, vm, stderr);
    return qubes_commit(q, ours ? 0 : QUBES_UNCHANGED, err);
}

/* A DispVM on another host: its domain there and its volumes (its run
 * directory here is the caller's). 0 when nothing is left of it there. */
static int remote_remove(struct qubes *q, const char *name, const char *host, FILE *progress,
                         struct qerr *err)
{
    struct vmm *vmm = qubes_host_vmm(q, host, err);
    if (!vmm)
        return -1;
    struct vmm_domain info;
    if (vmm_domain_info(vmm, name, &info, err) < 0)
        return -1;
    free(info.name);
    if (info.state != QVM_POWER_HALTED) {
        if (vmm_destroy(vmm, name, err) < 0)
            return -1;
        qsay(progress, "--> Destroyed %s on host %s", name, host);
    }
    return qhost_volumes_delete(vmm, name, err);
}

int dispvm_teardown_domain(struct qubes *q, struct dispvm_state *d, struct qerr *err)
{
    int rc = 0;
    if (d->has_domain && d->host[0]) {
        if (remote_remove(q, d->name, d->host, NULL, err) < 0) {
            /* Its host is gone or silent: the record stays, for
             * qvm-cleanup-dispvms once that host is back. */
            qerr_prefix(err, "%s stays on host '%s'", d->name, d->host);
            d->has_record = false;
            rc = -1;
        }
        d->has_domain = false;
    } else if (d->has_domain) {
        dispvm_emulator_report(q, d);
        if (vmm_kill_or_destroy(&q->vmm, d->name, err) < 0)
            rc = -1;
        d->has_domain = false;
    }
    if (d->rundir[0])
        remove_runtime(&q->cfg, d->rundir, d->ram, set_replaced(d));
    d->rundir[0] = '\0';
    return rc;
}

int dispvm_teardown_record(struct qubes *q, struct dispvm_state *d, struct qerr *err)
{
    if (!d->has_record)
        return 0;
    if (drop_record(q, d->name, err) < 0)
        return -1;
    d->has_record = false;
    return 0;
}

/* ---- qvm-cleanup-dispvms ---- */

int dispvm_sweep_records(struct qubes *q, int *removed, bool *changed, FILE *progress,
                         struct qerr *err)
{
    size_t n;
    cleanup_free struct qvm **vms = qvm_collection_sorted(q->coll, &n);
    for (size_t i = 0; vms && i < n; i++) {
        if (vms[i]->cls != QVM_DISP)
            continue;
        enum qvm_power st;
        char rundir[PATH_MAX], owner[PATH_MAX], ram[PATH_MAX];
        if (qrt_vm_path(&q->cfg, vms[i]->name, NULL, rundir, sizeof rundir, err) < 0 ||
            qrt_vm_path(&q->cfg, vms[i]->name, QRT_OWNER, owner, sizeof owner, err) < 0 ||
            qrt_vm_path(&q->cfg, vms[i]->name, QRT_RAM, ram, sizeof ram, err) < 0)
            return -1;
        /* Its worker keeps it (or is still making it): not ours to touch. */
        if (qrt_owner_alive(owner))
            continue;
        const char *host = qvm_host(vms[i]);
        if (host) {
            /* On another host: what is left there goes first; a host that
             * does not answer keeps it (and its record) for a later sweep. */
            struct qerr e;
            if (remote_remove(q, vms[i]->name, host, progress, &e) < 0) {
                qsay(progress, "warning: %s stays until host '%s' answers: %s", vms[i]->name,
                     host, e.msg);
                continue;
            }
            remove_runtime(&q->cfg, rundir, ram, true);
            qsay(progress, "--> Removed %s (on host %s; the process that kept it is gone)",
                 vms[i]->name, host);
            forget(q, vms[i], progress);
            *changed = true;
            (*removed)++;
            continue;
        }
        if (qubes_vm_state(q, vms[i], &st, err) < 0)
            return -1;
        if (st != QVM_POWER_HALTED)
            vmm_destroy(&q->vmm, vms[i]->name, NULL);
        remove_runtime(&q->cfg, rundir, ram, true);
        qsay(progress, "--> Removed %s (%s)", vms[i]->name,
             st == QVM_POWER_HALTED ? "not running" : "the process that kept it is gone");
        forget(q, vms[i], progress);
        *changed = true;
        (*removed)++;
    }
    return 0;
}

void dispvm_sweep_run_dirs(struct qubes *q, int *removed, FILE *progress)
{
    char dir[PATH_MAX];
    if (qrt_vms_dir(&q->cfg, dir, sizeof dir, NULL) < 0)
        return;
    DIR *dh = opendir(dir);
    struct dirent *e;
    while (dh && (e = readdir(dh))) {
        char rundir[PATH_MAX], ram[PATH_MAX], owner[PATH_MAX];
        if (!qvm_is_dispvm_name(e->d_name) || qvm_collection_by_name(q->coll, e->d_name) ||
            qrt_vm_path(&q->cfg, e->d_name, NULL, rundir, sizeof rundir, NULL) < 0 ||
            qrt_vm_path(&q->cfg, e->d_name, QRT_RAM, ram, sizeof ram, NULL) < 0 ||
            qrt_vm_path(&q->cfg, e->d_name, QRT_OWNER, owner, sizeof owner, NULL) < 0 ||
            /* A worker is making it: its record comes next. */
            qrt_owner_alive(owner))
            continue;
        char hostfile[PATH_MAX + 8], host[QUBES_NAME_MAX + 1];
        snprintf(hostfile, sizeof hostfile, "%s/" QRT_HOST, rundir);
        if (qread_small(hostfile, host, sizeof host) == 0 && host[0]) {
            struct qerr err;
            if (remote_remove(q, e->d_name, host, progress, &err) < 0) {
                qsay(progress, "warning: the files of %s stay until host '%s' answers: %s",
                     e->d_name, host, err.msg);
                continue;
            }
            remove_runtime(&q->cfg, rundir, ram, true);
            qsay(progress, "--> Removed the files of %s (on host %s)", e->d_name, host);
            (*removed)++;
            continue;
        }
        struct vmm_domain info;
        if (vmm_domain_info(&q->vmm, e->d_name, &info, NULL) == 0 &&
            info.state != QVM_POWER_HALTED) {
            vmm_destroy(&q->vmm, e->d_name, NULL);
            qsay(progress, "--> Destroyed the leftover domain %s", e->d_name);
        }
        free(info.name);
        remove_runtime(&q->cfg, rundir, ram, true);
        qsay(progress, "--> Removed the files of %s", e->d_name);
        (*removed)++;
    }
    if (dh)
        closedir(dh);
}

void dispvm_sweep_memory_files(struct qubes *q, FILE *progress)
{
    size_t n;
    cleanup_free struct qvm **vms = qvm_collection_sorted(q->coll, &n);
    for (size_t i = 0; vms && i < n; i++) {
        enum qvm_power st;
        struct dvmdata set;
        if (vms[i]->cls == QVM_DISP || qubes_vm_state(q, vms[i], &st, NULL) < 0 ||
            dvmdata_of(&q->cfg, vms[i]->name, &set, NULL) < 0)
            continue;
        int gone = dispvm_ram_gc(&q->cfg, vms[i]->name, set.savefile, st == QVM_POWER_HALTED);
        if (gone)
            qsay(progress, "--> Removed %d unused memory file(s) of %s", gone, vms[i]->name);
    }
}
