/* Private to dispvm/: a new DispVM from the savefile set of its template. */
#ifndef QUBES_DISPVM_RESTORE_H
#define QUBES_DISPVM_RESTORE_H

#include "state.h"

/* How long a restored DispVM's agent has to answer. */
#define DISPVM_AGENT_WAIT_MS 30000

/* Starts its netvm chain, picks the DispVM's name, makes its disk layers,
 * adds its record (a short write transaction under the start lock: its
 * template must not run), restores its domain, starts its qrexec-daemon,
 * gives it its memory back, lets it run and waits (no lock held) until
 * its agent answered the daemon. The caller holds the set's lock shared
 * (*set_lock, dvmdata_lock), checked the set usable under it, and has
 * q->coll loaded; the lock is released once the domain holds the set's
 * files. d holds the caller's part; on failure it says what exists for
 * dispvm_teardown(). */
int dispvm_restore(struct qubes *q, struct dispvm_state *d, int *set_lock, struct qerr *err);

/* A preload is made ahead of anyone's request, below what requests need:
 * its worker and its domain's emulator (before the domain first runs,
 * where the backend knows its process) run at this nice value until a
 * request claims it, and then at 0. */
#define DISPVM_PRELOAD_NICE 10

/* With --timings (else nothing): the emulator's CPU from now on is the
 * request's, for dispvm_emulator_report (a claimed preload; a DispVM
 * restored for a request counts from its restore, which takes it). */
void dispvm_emulator_baseline(struct qubes *q, struct dispvm_state *d);
/* With --timings, before the teardown ends the emulator of a DispVM of
 * this host: one line for each class of its threads (the main thread:
 * its start, the device-state load, device emulation; the vCPUs: the
 * guest, and under TCG the translation of its code; the rest: I/O and
 * monitor threads), their CPU and page faults since the baseline, with
 * the time since it as the wall time. */
void dispvm_emulator_report(struct qubes *q, const struct dispvm_state *d);

/* Gives `vm` the firewall rules of `from` (the VM that asked for it; the
 * defaults when NULL), written, like every firewall file, under the
 * qubes.xml write lock the caller holds. With `next_expiry`: the earliest
 * expiry time of those rules (0: none), for its qrexec daemon. */
int dispvm_inherit_firewall(struct qubes *q, const struct qvm *vm, const struct qvm *from,
                            long long *next_expiry, struct qerr *err);

/* A new DispVM needs this much free host memory (the original asked for
 * 400 MiB); QUBES_DISPVM_MIN_FREE_MIB changes it. */
#define DISPVM_MIN_FREE_MIB 400
int dispvm_enough_memory(struct vmm *vmm, struct qerr *err);

#endif
