/* Private to dispvm/: the pool of preloaded DispVMs of a template, restored
 * and paused ahead (qubes-prefs dispvm-preload N), nobody's until claimed. */
#ifndef QUBES_DISPVM_PRELOAD_H
#define QUBES_DISPVM_PRELOAD_H

#include "state.h"

/* Restores and pauses DispVMs of t until as many wait as dispvm-preload
 * asks. The caller holds the qfile-daemon-dvm lock and has q->coll loaded
 * and t's set checked. */
int dispvm_pool_fill(struct qubes *q, const struct dispvm_template *t, FILE *progress,
                     struct qerr *err);

/* Takes a paused preload of d's template, makes it d (the caller's, with
 * its label and firewall rules) and resumes it. 0: claimed; 1: none ready
 * (the caller restores one); -1: error. A preload that fails is torn down
 * and never stalls the request. */
int dispvm_pool_claim(struct qubes *q, struct dispvm_state *d, struct qerr *err);

/* Tears down every preload of t (they come from an older savefile). */
int dispvm_pool_drop(struct qubes *q, const struct dispvm_template *t, struct qerr *err);

#endif
