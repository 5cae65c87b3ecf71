#include "templates.h"

#include <stdlib.h>

#include "../orchestrator/qubes.h"

/* The template class each VM class may be based on.
 * A TemplateHVm or PV TemplateVm has no template, an HVM only a TemplateHVm,
 * PV VMs only a PV TemplateVm, a DispVM either kind of template. */
static bool accepts(enum qvm_class child, enum qvm_class tpl)
{
    switch (child) {
    case QVM_HVM:
        return tpl == QVM_TEMPLATE_HVM;
    case QVM_APP:
    case QVM_NET:
    case QVM_PROXY:
        return tpl == QVM_TEMPLATE;
    case QVM_DISP:
        return tpl == QVM_TEMPLATE || tpl == QVM_TEMPLATE_HVM;
    default:
        return false;
    }
}

bool template_class_accepts_template(enum qvm_class child)
{
    return child == QVM_HVM || child == QVM_APP || child == QVM_NET || child == QVM_PROXY ||
           child == QVM_DISP;
}

int template_check_compat(enum qvm_class child, const char *child_name,
                          const struct qvm *tpl, struct qerr *err)
{
    if (!template_class_accepts_template(child))
        return qerr_set(err, "%s '%s' cannot be based on a template (it is not template-based)",
                        qvm_class_label(child), child_name);
    if (!accepts(child, tpl->cls)) {
        const char *want = child == QVM_HVM ? "a TemplateHVM" : "a TemplateVM";
        return qerr_set(err, "%s '%s' cannot be based on %s '%s': it needs %s",
                        qvm_class_label(child), child_name, qvm_class_label(tpl->cls),
                        tpl->name, want);
    }
    return 0;
}

static int running(struct qubes *q, const struct qvm *vm, bool *out, struct qerr *err)
{
    enum qvm_power st;
    if (qubes_vm_state(q, vm, &st, err) < 0)
        return -1;
    *out = qvm_power_is_running(st);
    return 0;
}

int template_check_start(struct qubes *q, const struct qvm *vm, struct qerr *err)
{
    bool on;
    if (qvm_class_is_template(vm->cls)) {
        size_t n;
        struct qvm **kids = qvm_collection_children(q->coll, vm, &n);
        if (!kids)
            return qerr_set(err, "out of memory");
        int rc = 0;
        for (size_t i = 0; i < n && rc == 0; i++) {
            if (running(q, kids[i], &on, err) < 0)
                rc = -1;
            else if (on)
                rc = qerr_set(err, "Cannot start %s template while VMs based on it are running "
                              "('%s')", vm->cls == QVM_TEMPLATE_HVM ? "HVM" : "the",
                              kids[i]->name);
        }
        free(kids);
        return rc;
    }
    if (vm->template_qid >= 0) {
        struct qvm *tpl = qvm_collection_by_qid(q->coll, vm->template_qid);
        if (tpl && running(q, tpl, &on, err) < 0)
            return -1;
        if (tpl && on)
            return qerr_set(err, "Cannot start the %s while its template is running ('%s')",
                            vm->cls == QVM_HVM ? "HVM" : "VM", tpl->name);
    }
    return 0;
}
