/* Disposable VMs: a savefile of a booted, warmed-up VM (`<template>-dvm`),
 * restored under a new identity for every request, destroyed afterwards.
 * DispVMs are made and kept by the DispVM service (qubes-dvmd, one per run
 * directory, started by the first request), each by a worker process of
 * its own; a request asks the service and runs its service in the DispVM
 * it gets. This header is the whole public face of dispvm/; the other
 * headers there are its parts (dispvm.c names them). */
#ifndef QUBES_DISPVM_H
#define QUBES_DISPVM_H

#include <stdbool.h>
#include <stdio.h>

#include "../orchestrator/qubes.h"
#include "client.h"

/* qvm-create-default-dvm: creates `<template>-dvm` when missing, boots it,
 * waits for its agent, saves it, and replaces the savefile (and the disk
 * snapshots it goes with) atomically in $BASE/dvmdata; the template's
 * preloads are then made anew (dispvm_preload_fill). */
int dispvm_prepare(struct qubes *q, const char *template_name, FILE *progress,
                   struct qerr *err);
/* The same on the registered host `host` (NULL or "local": this one):
 * `<template>-dvm-<host>` lives there, and so does its savefile set
 * (dispvm/remote.h); the preloads of that host are made anew (this
 * host's are left alone). */
int dispvm_prepare_on(struct qubes *q, const char *template_name, const char *host,
                      FILE *progress, struct qerr *err);

/* Whether the savefile of `template_name` is missing or stale (its template's
 * root image or kernel, or its dvm VM's network, changed since); *why says
 * which. Reads q->coll as loaded. */
int dispvm_savefile_state(struct qubes *q, const char *template_name, bool *usable,
                          char *why, size_t whylen, struct qerr *err);

/* qfile-daemon-dvm's request (struct dispvm_request, dispvm_run): client.h. */

#define DISPVM_PRELOAD_MAX QUBES_DISPVM_PRELOAD_MAX

/* The savefile set of the template is new (`template_name` T, or T@HOST
 * for its set on another host): the service drops its preloads and
 * restores and pauses new ones until as many wait as the
 * global `dispvm-preload` setting asks (qubes-prefs); returns once they
 * are parked. A request takes one, and a replacement is restored once
 * that request's service has ended. Nothing to do (and no service
 * started) when none runs and dispvm-preload is 0. */
int dispvm_preload_fill(struct qubes *q, const char *template_name, FILE *progress,
                        struct qerr *err);

/* qubes-dvmd: runs the DispVM service (dispvm/service.h) until SIGTERM;
 * detached unless `foreground`. 1 when one already runs here. */
int dispvm_service(bool foreground, struct qerr *err);
/* Stops the service of cfg's run directory (its DispVMs go first). */
int dispvm_service_end(const struct qubes_config *cfg, struct qerr *err);

/* qvm-cleanup-dispvms: drops the records of DispVMs that do not run,
 * destroys DispVM domains that have no record, removes their files.
 * *removed counts what was cleaned. */
int dispvm_cleanup(struct qubes *q, int *removed, FILE *progress, struct qerr *err);

#endif
