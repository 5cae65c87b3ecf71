/* Private to dispvm/: a worker of the DispVM service, one process per
 * DispVM, forked by the service (dispvm/service.h) with the hypervisor's
 * library already loaded. It makes the DispVM (restored from its
 * template's savefile set), gives it its identity, serves one request with
 * it and tears it down; it is the DispVM's owner (runtime.h) while it
 * lives. A preload's worker makes it ahead, before anyone asks, rehearses
 * a request in it once (the guest's and the emulator's caches warm up),
 * pauses it and waits, parked, for the service to hand it a request
 * (DVM_CLAIM).
 *
 * The request's client talks to the worker directly (dispvm/proto.h): the
 * worker answers READY with the DispVM's name once it runs with its
 * identity, or ERROR; the DispVM goes when the client says DONE or hangs
 * up, or when the service ends (SIGTERM: the worker's parent-death
 * signal). Progress lines and timings go to the client's standard error
 * when it asked for them. */
#ifndef QUBES_DISPVM_WORKER_H
#define QUBES_DISPVM_WORKER_H

#include "proto.h"

/* Serves the request `rq` (a DVM_REQUEST, its descriptors attached: the
 * client's stderr) of the client connected on `client` with a DispVM of its
 * own; `ctl` is the worker's line to the service. Never returns. */
void dispvm_worker_request(int ctl, struct dvm_msg *rq, int client) __attribute__((noreturn));

/* Makes a preload of the pool `pool` (T, or T@HOST: on that host) and
 * parks it; progress goes to `out` (-1: the service's log). Then serves the
 * request the service hands it (it may decline one it cannot serve:
 * another network); once that DispVM is gone (here, cleanly), it makes
 * the next preload the service asks for (DVM_PRELOAD). Never returns. */
void dispvm_worker_preload(int ctl, const char *pool, int out) __attribute__((noreturn));

#endif
