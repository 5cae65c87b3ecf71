/* The chains of dispvm.h, step by step; the steps are in the files named
 * after them: state (what a DispVM and its template are), prepare (the
 * savefile set), restore, preload (the pool), session (serving, detached
 * processes), teardown (the end, the sweep). */
#include "dispvm.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "../orchestrator/monitor.h"
#include "../orchestrator/runtime.h"
#include "../orchestrator/util.h"
#include "prepare.h"
#include "preload.h"
#include "restore.h"
#include "session.h"
#include "teardown.h"

int dispvm_savefile_state(struct qubes *q, const char *template_name, bool *usable,
                          char *why, size_t whylen, struct qerr *err)
{
    struct dispvm_template t;
    if (dispvm_template_find(q, template_name, &t, err) < 0)
        return -1;
    return dispvm_set_usable(q, &t, usable, why, whylen, err);
}

int dispvm_prepare(struct qubes *q, const char *template_name, FILE *progress,
                   struct qerr *err)
{
    struct dispvm_template t;
    if (qubes_load_for_reading(q, err) < 0 ||
        dispvm_template_find(q, template_name, &t, err) < 0 ||
        dispvm_set_make(q, &t, progress, err) < 0)
        return -1;
    /* Preloads restored from the old savefile go; new ones come. */
    if (dispvm_pool_drop(q, &t, err) < 0 || dispvm_preload_fill(q, t.name, progress, err) < 0)
        return qerr_prefix(err, "the savefile is ready, but preloading failed");
    return 0;
}

int dispvm_preload_fill(struct qubes *q, const char *template_name, FILE *progress,
                        struct qerr *err)
{
    struct dispvm_template t;
    bool usable = false;
    char why[512];
    cleanup_close int lock = qrt_lock(&q->cfg, QRT_DISPVM_LOCK, err);
    if (lock < 0 || qubes_load_for_reading(q, err) < 0 ||
        dispvm_template_find(q, template_name, &t, err) < 0 ||
        dispvm_set_usable(q, &t, &usable, why, sizeof why, err) < 0)
        return -1;
    if (!usable)
        return qerr_set(err, "no preloading: %s", why);
    return dispvm_pool_fill(q, &t, progress, err);
}

/* A replacement for a claimed preload, restored by a detached process so
 * that the request does not wait for it. */
static void replenish_in_background(const char *template_name)
{
    if (dispvm_detach(SIG_DFL) != 0)
        return;
    struct qubes q;
    struct qerr err;
    if (qubes_open(&q, false, &err) == 0)
        dispvm_preload_fill(&q, template_name, NULL, &err);
    qubes_close(&q);
    _exit(0);
}

/* With the qfile-daemon-dvm lock held: a stale set is made again (the lock
 * is let go meanwhile, and the database read again), or refused. */
static int usable_set(struct qubes *q, const struct dispvm_request *r,
                      struct dispvm_template *t, int *lock, struct qerr *err)
{
    bool usable;
    char why[512];
    if (dispvm_set_usable(q, t, &usable, why, sizeof why, err) < 0)
        return -1;
    if (usable)
        return 0;
    if (!r->regenerate)
        return qerr_set(err, "the DispVM savefile cannot be used: %s (run "
                        "qvm-create-default-dvm %s)", why, t->name);
    qsay(r->progress, "--> Savefile unusable (%s): making it again", why);
    qclose(lock);
    if (dispvm_prepare(q, t->name, r->progress, err) < 0 ||
        (*lock = qrt_lock(&q->cfg, QRT_DISPVM_LOCK, err)) < 0 ||
        qubes_load_for_reading(q, err) < 0)
        return -1;
    return dispvm_template_find(q, t->name, t, err);
}

int dispvm_run(struct qubes *q, const struct dispvm_request *r, int *status, struct qerr *err)
{
    struct dispvm_template t;
    struct dispvm_state d = { .dispid = -1 };
    dispvm_session_signals();
    if (qubes_load_for_reading(q, err) < 0 ||
        dispvm_template_find(q, r->template_name, &t, err) < 0)
        return -1;
    if (strcmp(r->source, "dom0") != 0 && !qvm_collection_by_name(q->coll, r->source))
        return qerr_set(err, "source VM '%s' does not exist", r->source);

    /* Under the qfile-daemon-dvm lock: a preload is claimed, or a DispVM
     * restored. */
    cleanup_close int lock = qrt_lock(&q->cfg, QRT_DISPVM_LOCK, err);
    int rc = lock < 0 ? -1 : usable_set(q, r, &t, &lock, err);
    if (rc == 0) {
        dispvm_state_init(&d, &t, q->coll, r->source, r->label, false, r->progress);
        d.service = r->service;
        d.command = r->command;
        d.user = r->user;
        rc = dispvm_pool_claim(q, &d, err);
    }
    if (rc == 1)        /* none ready: restore one now, if the host has the memory */
        rc = dispvm_enough_memory(q, err) < 0 ? -1 : dispvm_restore(q, &d, err);
    bool preloading = rc == 0 && dispvm_preload_target(q->coll) > 0;
    qclose(&lock);
    if (preloading)
        replenish_in_background(t.name);
    /* The service needs no hypervisor connection: closing it now spares the
     * caller waiting, at our exit, for a daemon busy with the teardown. A
     * teardown here reconnects. */
    vmm_close(&q->vmm);

    /* Its GUI starts with it: the monitor layout goes first. */
    char layout[QMONITOR_MAX * 32] = "";
    struct qerr e;
    if (rc == 0 && qmonitor_layout(&q->cfg, layout, sizeof layout, NULL, &e) < 0)
        qsay(r->progress, "warning: %s", e.msg);
    if (rc == 0)
        rc = dispvm_stopped() ? qerr_set(err, "stopped by signal %d", dispvm_stopped())
                              : dispvm_serve(&d, layout, status, err);
    if (rc == 0 && !r->wait_teardown && !dispvm_stopped())
        return dispvm_teardown_detached(q, &d) == 0 ? 0 : dispvm_teardown(q, &d, err);
    if (dispvm_teardown(q, &d, rc < 0 ? &e : err) < 0 && rc == 0)
        rc = -1;
    return rc;
}

int dispvm_cleanup(struct qubes *q, int *removed, FILE *progress, struct qerr *err)
{
    bool changed = false;
    *removed = 0;
    if (qubes_load_for_writing(q, false, err) < 0)
        return -1;
    int rc = dispvm_sweep_records(q, removed, &changed, progress, err);
    if (rc == 0) {
        dispvm_sweep_run_dirs(q, removed, progress);
        dispvm_sweep_memory_files(q, progress);
    }
    return qubes_commit(q, rc < 0 ? rc : changed ? 0 : QUBES_UNCHANGED, err);
}
