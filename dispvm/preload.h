/* Private to dispvm/: a preloaded DispVM, restored and paused ahead by a
 * worker of the DispVM service (qubes-prefs dispvm-preload N per template),
 * nobody's until a request claims it. */
#ifndef QUBES_DISPVM_PRELOAD_H
#define QUBES_DISPVM_PRELOAD_H

#include "state.h"

/* The request (template_name, "" for the default; source; label, "" for
 * the source's) takes the preload d: in one write transaction its record
 * becomes the request's (label, not internal any more) and it gets the
 * source's firewall rules, applied to its chains. 0: claimed; 1: this
 * preload cannot serve the request (another template, or the source's
 * DispVMs go on another network), nothing changed; -1: error. */
int dispvm_preload_claim(struct qubes *q, struct dispvm_state *d, const char *template_name,
                         const char *source, const char *label, struct qerr *err);

#endif
