/* Private to dispvm/: the DispVM service (qubes-dvmd), one per run
 * directory: it takes requests on $RUN/dvmd.sock and keeps the preloaded
 * DispVMs of each template it has served. It makes no DispVM itself: each
 * is a worker's (dispvm/worker.h), forked from this process so that the
 * hypervisor's library and the firewall's are loaded once, here, and not
 * by every request.
 *
 * Its files are runtime.h's QRT_DVMD_*.
 *
 * A request goes to a parked preload of its template when there is one,
 * else to a new worker; a preload's replacement starts once the claimed
 * one's service has ended (its output is complete), at a lower priority.
 * The pool follows qubes-prefs dispvm-preload (qubes.xml is looked at
 * every second): more preloads are made, or parked ones go. A savefile
 * made again (DVM_FILL) replaces the template's preloads. */
#ifndef QUBES_DISPVM_SERVICE_H
#define QUBES_DISPVM_SERVICE_H

#include <stdbool.h>

#include "../orchestrator/config.h"
#include "../orchestrator/error.h"

/* At most this many DispVMs (workers) at once. */
#define DVM_MAX_WORKERS 64
/* Without DispVMs, preloads or requests for this long, the service ends. */
#define DVM_IDLE_S 60

/* Runs the service until SIGTERM, SIGINT or idleness. 1 when another
 * service already runs for this run directory. Unless `foreground`, it
 * detaches once it listens (the caller returns then) and logs to
 * $RUN/dvmd.log. */
int dispvm_service_main(bool foreground, struct qerr *err);

/* Stops the running service (its workers tear their DispVMs down first);
 * 0 also when none ran. */
int dispvm_service_stop(const struct qubes_config *cfg, struct qerr *err);

/* A connection to the service; started first when none answers and
 * `start`. 1 (and no connection) when none runs and !start. */
int dispvm_service_connect(const struct qubes_config *cfg, bool start, int *sock,
                           struct qerr *err);

#endif
