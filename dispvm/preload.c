#include "preload.h"

#include <string.h>

#include "../orchestrator/util.h"
#include "../orchestrator/vmguard.h"
#include "restore.h"

/* Whether the request (template, source, label) may take the preload d:
 * its template, and the network its DispVMs go on is the preload's. The
 * request's side goes to *want. */
static bool fits(struct qubes *q, const struct dispvm_state *d, const char *template_name,
                 const char *source, const char *label, struct dispvm_state *want)
{
    int tpl = template_name[0] ? -1 : q->coll->globals[QG_DEFAULT_TEMPLATE];
    if (template_name[0]) {
        const struct qvm *t = qvm_collection_by_name(q->coll, template_name);
        tpl = t ? t->qid : -1;
    }
    if (tpl != d->tpl->qid)
        return false;
    dispvm_state_init(want, d->tpl, q->coll, source, label[0] ? label : NULL, false, NULL);
    return want->netvm_qid == d->netvm_qid;
}

/* In the write transaction: the preload becomes the request's. */
static int make_it_theirs(struct qubes *q, struct dispvm_state *d, const struct dispvm_state *want,
                          struct qerr *err)
{
    struct qvm *vm = qvm_collection_by_name(q->coll, d->name);
    if (!vm || vm->cls != QVM_DISP)
        return qerr_set(err, "the record of preloaded %s is gone", d->name);
    snprintf(d->source, sizeof d->source, "%s", want->source);
    d->source_qid = want->source_qid;
    snprintf(d->label, sizeof d->label, "%s", want->label);
    d->preload = false;
    struct qvm *src = dispvm_source_vm(q->coll, d);
    qattrs_del(&vm->attrs, "preload");
    if (qvm_set_attr(vm, "internal", "False", err) < 0 ||
        qvm_set_attr(vm, "label", d->label, err) < 0 ||
        (src && dispvm_inherit_firewall(q, vm, src, NULL, err) < 0) ||
        /* Its chains carry the rules it was restored with: now the caller's. */
        (src && d->net.on && vmguard_up(q, vm, err) < 0))
        return -1;
    return 0;
}

int dispvm_preload_claim(struct qubes *q, struct dispvm_state *d, const char *template_name,
                         const char *source, const char *label, struct qerr *err)
{
    if (qubes_load_for_writing(q, false, err) < 0)
        return -1;
    if (strcmp(source, "dom0") != 0 && !qvm_collection_by_name(q->coll, source)) {
        qubes_commit(q, QUBES_UNCHANGED, err);
        return qerr_set(err, "source VM '%s' does not exist", source);
    }
    struct dispvm_state want;
    if (!fits(q, d, template_name, source, label, &want))
        return qubes_commit(q, QUBES_UNCHANGED, err) < 0 ? -1 : 1;
    return qubes_commit(q, make_it_theirs(q, d, &want, err), err);
}
