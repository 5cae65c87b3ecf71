/* Disposable VMs: a savefile of a booted, warmed-up VM (`<template>-dvm`),
 * restored under a new identity for every request, destroyed afterwards.
 * This header is the whole public face of dispvm/; the other headers there
 * are its parts (dispvm.c names them). */
#ifndef QUBES_DISPVM_H
#define QUBES_DISPVM_H

#include <stdbool.h>
#include <stdio.h>

#include "../orchestrator/qubes.h"

/* qvm-create-default-dvm: creates `<template>-dvm` when missing, boots it,
 * waits for its agent, saves it, and replaces the savefile (and the disk
 * snapshots it goes with) atomically in $BASE/dvmdata. */
int dispvm_prepare(struct qubes *q, const char *template_name, FILE *progress,
                   struct qerr *err);

/* Whether the savefile of `template_name` is missing or stale (its template's
 * root image or kernel, or its dvm VM's network, changed since); *why says
 * which. Reads q->coll as loaded. */
int dispvm_savefile_state(struct qubes *q, const char *template_name, bool *usable,
                          char *why, size_t whylen, struct qerr *err);

struct dispvm_request {
    const char *service;        /* e.g. qubes.VMShell, or */
    const char *command;        /* a command by /bin/sh -c (qvm-run --dispvm) */
    const char *source;         /* the VM that asks */
    const char *user;           /* "DEFAULT": the DispVM's default user */
    const char *label;          /* NULL: the source VM's label */
    const char *template_name;  /* NULL: the default template */
    bool regenerate;            /* a stale savefile is made again (else refused) */
    bool wait_teardown;         /* return once the DispVM is gone (else as soon
                                   as the service ended, tearing it down in a
                                   detached process) */
    FILE *progress;
};

/* qfile-daemon-dvm: a fresh DispVM runs the service with our stdin and
 * stdout, then is destroyed and its record removed. *status gets the
 * service's exit status. SIGTERM, SIGINT and SIGHUP end the service and
 * still clean up (then, and after any error, before returning). Errors of
 * a detached teardown go to $RUN/dispvm-teardown.log. */
int dispvm_run(struct qubes *q, const struct dispvm_request *r, int *status, struct qerr *err);

#define DISPVM_PRELOAD_MAX QUBES_DISPVM_PRELOAD_MAX

/* Restores and pauses DispVMs of the template until as many wait as the
 * global `dispvm-preload` setting asks (qubes-prefs). A request takes one,
 * and a replacement is restored in the background. */
int dispvm_preload_fill(struct qubes *q, const char *template_name, FILE *progress,
                        struct qerr *err);

/* qvm-cleanup-dispvms: drops the records of DispVMs that do not run,
 * destroys DispVM domains that have no record, removes their files.
 * *removed counts what was cleaned. */
int dispvm_cleanup(struct qubes *q, int *removed, FILE *progress, struct qerr *err);

#endif
