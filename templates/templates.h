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

#endif
