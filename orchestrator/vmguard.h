/* What guards a VM's network interface on the host: its chains in the
 * `bridge qubes` table (vmfw.h), computed from its record (its address,
 * its netvm's serving side) and its firewall rules. Installed before its
 * domain is created, so that no frame of the VM ever passes unchecked, and
 * again whenever its rules change while it runs. */
#ifndef QUBES_VMGUARD_H
#define QUBES_VMGUARD_H

#include <stdbool.h>

#include "error.h"

struct qubes;
struct qvm;

/* Installs (or replaces) the chains of `vm`'s interface. Nothing to do for
 * a VM without a network or on libvirt's test driver. Fails closed: the
 * caller does not start a VM whose chains are not in place. */
int vmguard_up(struct qubes *q, const struct qvm *vm, struct qerr *err);

/* The same; *next_expire is then the UNIX time at which the earliest of
 * the rules now in force expires (0: none does), when the chains must be
 * installed again without it (the VM's qrexec daemon does that). */
int vmguard_up_next(struct qubes *q, const struct qvm *vm, long long *next_expire,
                    struct qerr *err);

/* When the earliest of `vm`'s rules expires (0: none does), from its
 * firewall file alone: nothing is installed. */
int vmguard_next_expire(struct qubes *q, const struct qvm *vm, long long *next_expire,
                        struct qerr *err);

/* Removes them (none there is fine). */
int vmguard_down(struct qubes *q, const struct qvm *vm, struct qerr *err);

/* After a change of `vm`'s rules: installs them at once when it runs (its
 * qrexec daemon's socket exists: the hypervisor is not asked, so that the
 * tools work offline); *applied says whether it did. */
int vmguard_reload(struct qubes *q, const struct qvm *vm, bool *applied, struct qerr *err);

#endif
