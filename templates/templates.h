/* Template rules: which VM may be based on which template (the table the
 * database enforces), and the exclusion of a template and the VMs based on
 * it. Pure rules over the VM model: nothing here asks the hypervisor. */
#ifndef QUBES_TEMPLATES_H
#define QUBES_TEMPLATES_H

#include <stdbool.h>
#include <stddef.h>

#include "../orchestrator/error.h"
#include "../orchestrator/vm.h"

/* Whether a VM of class `child` accepts a template at all. */
bool template_class_accepts_template(enum qvm_class child);
/* Checks that `tpl` may be the template of a VM of class `child` (named
 * `child_name` in the error). */
int template_check_compat(enum qvm_class child, const char *child_name,
                          const struct qvm *tpl, struct qerr *err);


/* The exclusion: a template never runs while a VM based on it runs, and
 * the reverse. A rule over power states given as data: `related` are the
 * VMs whose state decides a start of `vm` (its children when it is a
 * template, else its template), running[i] tells whether related[i] runs.
 * A start asks the hypervisor and checks with the start lock held, so that
 * the check and the domain's creation are one step for every other start
 * (lifecycle.h). */
int template_check_start(const struct qvm *vm, struct qvm *const *related, const bool *running,
                         size_t n, struct qerr *err);
#endif
