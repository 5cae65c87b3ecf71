/* Private to dispvm/: a request's side of its DispVM: the service (or
 * command) run in it with the caller's streams, through the DispVM's
 * qrexec-daemon, while the service's worker keeps the DispVM. */
#ifndef QUBES_DISPVM_SESSION_H
#define QUBES_DISPVM_SESSION_H

#include "../orchestrator/error.h"

/* SIGTERM, SIGINT and SIGHUP end a request (dispvm_stopped tells), still
 * tearing its DispVM down; SIGPIPE is ignored. */
void dispvm_session_signals(void);
/* The signal that ended the request, 0 while none came. */
int dispvm_stopped(void);

/* What runs in the DispVM: a service (with the VM that asks) or a
 * command, as `user` ("DEFAULT": the DispVM's default user). */
struct dispvm_job {
    const char *service, *source, *command, *user;
};

/* In the DispVM `name`, whose qrexec-daemon listens on `sock`: the monitor
 * `layout` first ("" for none), then the job with our stdin, stdout and
 * stderr, relayed by this process until it ends or a stop signal comes.
 * *status gets its exit status. */
int dispvm_session(const char *name, const char *sock, const struct dispvm_job *job,
                   const char *layout, int *status, struct qerr *err);

#endif
