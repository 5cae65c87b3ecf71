/* Private to dispvm/: which host a DispVM goes to when its request names
 * none. The candidates are the hosts with a savefile set of the template:
 * this one (its set in dvmdata) and each registered host H with a set of
 * T-dvm-H (dispvm/remote.h). With one candidate (the usual case: no other
 * host has a set) nothing is asked. With more, all are asked at once for
 * their free memory within the hosts' deadline (hosts.h); one that does
 * not answer is skipped (said on `progress`), and the DispVM goes where
 * free memory less the memory of the DispVMs placed there and still alive
 * is largest (ties: this host first, then the registry's order).
 *
 * A placement is recorded as $RUN/dispvm-placed/HOST.PID, owned (runtime.h)
 * by the worker that keeps the DispVM, so that placements made at the same
 * time see each other: the choice and the record are made under
 * $RUN/dispvm-place.lock. The record goes with the worker (or is found
 * dead by a later placement). */
#ifndef QUBES_DISPVM_PLACE_H
#define QUBES_DISPVM_PLACE_H

#include <stddef.h>
#include <stdio.h>

#include "state.h"

/* The host for a DispVM of the template `template_name` (NULL: the default
 * one): "" for this one, else a registered host's name, in `host`. The
 * record of the placement is `record` ("" when none was made); the caller
 * removes it when its DispVM is gone (dispvm_place_release). */
int dispvm_place(struct qubes *q, const char *template_name, char *host, size_t len,
                 char *record, size_t rlen, FILE *progress, struct qerr *err);
void dispvm_place_release(const char *record);

#endif
