/* Private to dispvm/: serving a request in its DispVM, and the processes
 * that outlive the request (the teardown after the service, the pool's
 * replenishment). */
#ifndef QUBES_DISPVM_SESSION_H
#define QUBES_DISPVM_SESSION_H

#include "state.h"

/* SIGTERM, SIGINT and SIGHUP end a request (dispvm_stopped tells), still
 * tearing its DispVM down; SIGPIPE is ignored. */
void dispvm_session_signals(void);
/* The signal that ended the request, 0 while none came. */
int dispvm_stopped(void);

/* Runs the service (or command) of d in it with our stdin, stdout and
 * stderr, in a child, after telling the guest its new identity and giving
 * it the monitor `layout` ("" for none). *status gets the service's exit
 * status. */
int dispvm_serve(const struct dispvm_state *d, const char *layout, int *status,
                 struct qerr *err);

/* Starts a detached process: a session of its own, reparented (forked
 * twice, the middle one reaped here), none of the caller's descriptors,
 * SIGTERM, SIGINT and SIGHUP set to `on_stop`. Returns 0 in that process,
 * 1 in the caller once it exists, -1 when it could not be started. */
int dispvm_detach(void (*on_stop)(int));

/* The teardown once the service has ended, in a detached process (the
 * caller has its exit status meanwhile), with a connection of its own;
 * errors go to $RUN/dispvm-teardown.log. Returns -1 when no process could
 * be started: then the caller tears down itself. */
int dispvm_teardown_detached(struct qubes *q, const struct dispvm_state *d);

#endif
