/* Asking for a DispVM (part of dispvm.h's public face): what the programs
 * that only ask need, and nothing that loads the database, the hypervisor
 * or XML (client.c). */
#ifndef QUBES_DISPVM_CLIENT_H
#define QUBES_DISPVM_CLIENT_H

#include <stdbool.h>
#include <stdio.h>

#include "../orchestrator/config.h"
#include "../orchestrator/error.h"

struct dispvm_request {
    const char *service;        /* e.g. qubes.VMShell, or */
    const char *command;        /* a command by /bin/sh -c (qvm-run --dispvm) */
    const char *source;         /* the VM that asks */
    const char *user;           /* "DEFAULT": the DispVM's default user */
    const char *label;          /* NULL: the source VM's label */
    const char *template_name;  /* NULL: the default template */
    const char *host;           /* NULL: a host with a savefile of the template
                                   and the most free memory (dispvm/place.h);
                                   "local": this one; else a registered host */
    bool regenerate;            /* a stale savefile is made again (else refused) */
    bool wait_teardown;         /* return once the DispVM is gone (else as soon
                                   as the service ended, while its worker tears
                                   it down) */
    FILE *progress;
};

/* qfile-daemon-dvm: a fresh DispVM (a preloaded one when one waits) runs
 * the service with our stdin, stdout and stderr, then is destroyed and its
 * record removed by its worker, once we said the service ended (or hung
 * up). *status gets the service's exit status. SIGTERM, SIGINT and SIGHUP
 * end the service; the DispVM still goes. The service is started when none
 * runs (it inherits our environment). Timings (timing.h), when started, go
 * to the same descriptor from every process on the way. */
int dispvm_run(const struct qubes_config *cfg, const struct dispvm_request *r, int *status,
               struct qerr *err);

struct dvm_msg;
/* Waits for the service's next message on `sock` (a stop signal ends the
 * wait); its DVM_ERROR is our error, its hang-up one that says where its
 * log is. */
int dispvm_answer(int sock, struct dvm_msg *m, struct qerr *err);

#endif
