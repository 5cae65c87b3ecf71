#include "templates.h"

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

int template_check_start(const struct qvm *vm, struct qvm *const *related, const bool *running,
                         size_t n, struct qerr *err)
{
    for (size_t i = 0; i < n; i++) {
        if (!running[i])
            continue;
        if (qvm_class_is_template(vm->cls))
            return qerr_set(err, "Cannot start %s template while VMs based on it are running "
                            "('%s')", vm->cls == QVM_TEMPLATE_HVM ? "HVM" : "the",
                            related[i]->name);
        return qerr_set(err, "Cannot start the %s while its template is running ('%s')",
                        vm->cls == QVM_HVM ? "HVM" : "VM", related[i]->name);
    }
    return 0;
}
