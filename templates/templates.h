/* Template rules: which VM may be based on which template. The exclusion of
 * a template HVM and its running children lives here as the VM lifecycle
 * lands; today this is the compatibility table the database enforces. */
#ifndef QUBES_TEMPLATES_H
#define QUBES_TEMPLATES_H

#include <stdbool.h>

#include "../orchestrator/error.h"
#include "../orchestrator/vm.h"

/* Whether a VM of class `child` accepts a template at all. */
bool template_class_accepts_template(enum qvm_class child);
/* Checks that `tpl` may be the template of a VM of class `child` (named
 * `child_name` in the error). */
int template_check_compat(enum qvm_class child, const char *child_name,
                          const struct qvm *tpl, struct qerr *err);



struct qubes;
/* The exclusion: a template never runs while a VM based on it runs, and the
 * reverse. Called by a start with the start lock held, so that the check
 * and the domain's creation are one step for every other start. */
int template_check_start(struct qubes *q, const struct qvm *vm, struct qerr *err);
#endif
