#include "preload.h"

#include <string.h>

#include "../orchestrator/util.h"
#include "../orchestrator/vmguard.h"
#include "restore.h"
#include "teardown.h"

static bool is_preload_of(const struct qvm *vm, int tpl_qid)
{
    return vm->cls == QVM_DISP && vm->template_qid == tpl_qid &&
           qvm_get_bool(vm, "preload", false);
}

int dispvm_pool_fill(struct qubes *q, const struct dispvm_template *t, FILE *progress,
                     struct qerr *err)
{
    int want = dispvm_preload_target(q->coll), have = 0;
    for (struct qvm *vm = q->coll->by_qid; vm; vm = vm->hh_qid.next)
        if (is_preload_of(vm, t->qid))
            have++;
    for (; have < want; have++) {
        struct dispvm_state d;
        struct qerr later;
        if (dispvm_enough_memory(q, err) < 0)
            return qerr_prefix(err, "no more preloads");
        dispvm_state_init(&d, t, q->coll, "dom0", "gray", true, progress);
        if (dispvm_restore(q, &d, err) < 0) {
            dispvm_teardown(q, &d, &later);
            return -1;
        }
        qsay(progress, "--> Preloaded %s (paused)", d.name);
    }
    return 0;
}

/* The name of a paused preload of the template, "" when none waits. */
static void find_paused(struct qubes *q, int tpl_qid, char *out, size_t len)
{
    out[0] = '\0';
    for (struct qvm *vm = q->coll->by_qid; vm; vm = vm->hh_qid.next) {
        enum qvm_power st;
        if (is_preload_of(vm, tpl_qid) && qubes_vm_state(q, vm, &st, NULL) == 0 &&
            st == QVM_POWER_PAUSED) {
            snprintf(out, len, "%s", vm->name);
            return;
        }
    }
}

/* In the write transaction: the preload becomes the caller's. 1 when it is
 * not a preload any more (another request took it). */
static int make_it_ours(struct qubes *q, struct dispvm_state *d, const char *name,
                        struct qerr *err)
{
    struct qvm *vm = qvm_collection_by_name(q->coll, name);
    if (!vm || !is_preload_of(vm, d->tpl->qid))
        return 1;
    int rc = dispvm_state_name(d, &q->cfg, q->coll, name, -1, err);
    d->has_domain = d->has_record = d->rundir[0] != '\0';
    if (rc < 0)
        return -1;
    struct qvm *src = dispvm_source_vm(q->coll, d);
    qattrs_del(&vm->attrs, "preload");
    if (qvm_set_attr(vm, "internal", "False", err) < 0 ||
        qvm_set_attr(vm, "label", d->label, err) < 0 ||
        (src && dispvm_inherit_firewall(q, vm, src, err) < 0) ||
        /* Its chains carry the rules it was restored with: now the caller's. */
        (src && d->net.on && vmguard_up(q, vm, err) < 0))
        return -1;
    return dispvm_own(d, false, err);
}

int dispvm_pool_claim(struct qubes *q, struct dispvm_state *d, struct qerr *err)
{
    char name[QUBES_NAME_MAX + 1];
    struct qerr e;
    /* Preloads wait on T-dvm's network: a VM whose DispVMs go elsewhere
     * gets a fresh one. */
    if (d->netvm_qid != d->tpl->dvm_netvm_qid)
        return 1;
    find_paused(q, d->tpl->qid, name, sizeof name);
    if (!name[0])
        return 1;
    if (qubes_load_for_writing(q, false, err) < 0)
        return -1;
    int rc = qubes_commit(q, make_it_ours(q, d, name, &e), &e);
    if (!d->has_domain)
        return 1;       /* another request took it */
    if (rc == 0 && vmm_resume(&q->vmm, name, &e) == 0) {
        qsay(d->progress, "--> Using preloaded %s", name);
        return 0;
    }
    qsay(d->progress, "--> Preloaded %s failed (%s): restoring one instead", name, e.msg);
    dispvm_teardown(q, d, &e);
    dispvm_state_unname(d);
    /* A failed teardown may have left no collection loaded. */
    return !q->coll && qubes_load_for_reading(q, err) < 0 ? -1 : 1;
}

int dispvm_pool_drop(struct qubes *q, const struct dispvm_template *t, struct qerr *err)
{
    char names[QUBES_MAX_QID][QUBES_NAME_MAX + 1];
    int n = 0;
    if (qubes_load_for_reading(q, err) < 0)
        return -1;
    for (struct qvm *vm = q->coll->by_qid; vm && n < QUBES_MAX_QID; vm = vm->hh_qid.next)
        if (is_preload_of(vm, t->qid))
            snprintf(names[n++], sizeof names[0], "%s", vm->name);
    for (int i = 0; i < n; i++) {
        struct dispvm_state d;
        if (dispvm_state_existing(&d, &q->cfg, q->coll, names[i], err) < 0 ||
            dispvm_teardown(q, &d, err) < 0)
            return -1;
    }
    return 0;
}
