/* A VM's power state: the hypervisor's state of its domain, refined by the
 * agent. A running domain whose agent has not answered since it started is
 * Transient; the answer is recorded in the VM's run directory (`ready`,
 * holding the id of the domain it was given for). So is a pause by
 * qvm-pause (`paused`, the same way), which a caller that does not ask the
 * hypervisor (qubes_vm_run's fast path) must know of: a paused guest's
 * qrexec-daemon still takes requests that the guest will not answer.
 * Below the database's front door (qubes.h), which offers these with a
 * `struct qubes`. */
#ifndef QUBES_POWER_H
#define QUBES_POWER_H

#include <stdbool.h>

#include "config.h"
#include "error.h"
#include "vm.h"
#include "vmm.h"

/* Whether the VM runs in any way (not Halted, not unknown). */
bool qvm_power_is_running(enum qvm_power p);
/* The VM's state from its domain's details. dom0 is always Running. */
enum qvm_power qvm_power_refine(const struct qubes_config *cfg, const struct qvm *vm,
                                const struct vmm_domain *d);
/* Asks the hypervisor; the domain's details go to *info when not NULL (the
 * caller frees info->name). */
int qvm_power_get(struct vmm *vmm, const struct qubes_config *cfg, const struct qvm *vm,
                  struct vmm_domain *info, enum qvm_power *out, struct qerr *err);
/* The agent of `name` answered for the domain instance `id`. */
void qvm_power_mark_ready(const struct qubes_config *cfg, const char *name, int id);
/* The VM stopped, or starts afresh: what was known of its last run (its
 * agent's answer, a pause) is history. */
void qvm_power_clear_ready(const struct qubes_config *cfg, const char *name);
/* The domain instance `id` of `name` is about to be paused (written
 * atomically before the pause, so that no moment has it paused unmarked). */
int qvm_power_mark_paused(const struct qubes_config *cfg, const char *name, int id,
                          struct qerr *err);
/* Whether a pause is marked; *id (when not NULL) gets the domain instance
 * it was marked for, -1 when the mark cannot be read. A mark that exists
 * but cannot be read counts as one. */
bool qvm_power_paused_mark(const struct qubes_config *cfg, const char *name, int *id);
/* The pause is over (qvm-unpause, or a mark of another run). */
void qvm_power_clear_paused(const struct qubes_config *cfg, const char *name);

#endif
