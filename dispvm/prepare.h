/* Private to dispvm/: the savefile set of a template (dispvm/dvmdata.h):
 * whether it is usable, and making it. */
#ifndef QUBES_DISPVM_PREPARE_H
#define QUBES_DISPVM_PREPARE_H

#include <stdbool.h>

#include "state.h"

/* Whether the set of `t` can be restored: it exists and was made from the
 * template's root image and kernel as they are, on the network T-dvm is on
 * now. *why says what is wrong. Reads q->coll as loaded. */
int dispvm_set_usable(struct qubes *q, const struct dispvm_template *t, bool *usable, char *why,
                      size_t whylen, struct qerr *err);

/* Makes T-dvm (when missing), boots it, has the guest flush its disks,
 * shrinks it, saves it and puts the new set in place of the old one
 * together, once no restore is reading the old one (dvmdata_lock). The
 * caller holds the qfile-daemon-dvm lock: one preparation at a time. A
 * failure leaves the old set as it was. Updates t (T-dvm's qid and
 * network). */
int dispvm_set_make(struct qubes *q, struct dispvm_template *t, FILE *progress,
                    struct qerr *err);

#endif
