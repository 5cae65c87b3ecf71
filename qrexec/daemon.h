/* The qrexec daemon of a VM, the body of qrexec-daemon: the one holder of
 * the VM's agent channel. Host callers' requests (qvm-run, a DispVM's
 * request, the start of a VM) arrive on its socket and become sessions on
 * the channel, any number at once; the guest's calls (qrexec-client-vm) are
 * checked, decided by the policy and run in dom0 with the guest's streams.
 * Everything from the guest is untrusted input. It lives exactly as long as
 * the VM's channel, and keeps the VM's expiring firewall rules in force
 * meanwhile. */
#ifndef QUBES_QREXEC_DAEMON_H
#define QUBES_QREXEC_DAEMON_H

#include <stdbool.h>

#include "../orchestrator/error.h"

/* The daemon's database work is a program of its own, beside the
 * hypervisor backends (vmm_plugin_dir): the daemon starts with every VM
 * and faces its guest, and so loads no XML parser (libxml2 brings ICU and
 * libstdc++, about 1.5 ms of CPU at every start). Run as
 *
 *   QREXECD_DB known -- NAME
 *       exits 0 when NAME is a VM of qubes.xml, 1 when it is not, 2 when
 *       it cannot tell (said on standard error);
 *   QREXECD_DB firewall -- NAME [apply]
 *       writes one line: "0 NEXT PATH", the earliest expiry time of the
 *       VM's firewall rules (0: none) and the file they are in, or
 *       "-1 MESSAGE"; with `apply`, the VM's chains are installed again
 *       first, under the qubes.xml write lock. */
#define QREXECD_DB "qrexec-daemon-db"

/* Takes the VM's qrexec lock ($RUN/vms/NAME/qrexec.lock, which then holds
 * the daemon's pid) and, unless `foreground`, leaves its starter: with
 * `ready` >= 0 it writes one byte there once the lock is its own (for a
 * starter that goes on) and another once the agent answered, then closes
 * it, else the calling process exits 0 then; either
 * way it logs to $RUN/vms/NAME/qrexec.log. Then serves the channel until
 * it closes. `firewall`: the VM's firewall file when the starter knows it,
 * or NULL; `fw_next`: the earliest expiry of the rules the starter wrote
 * there (0: none; -1: unknown, then QREXECD_DB reads them). Returns in the
 * daemon: 0 when done, 1 when the channel could not be had; -1 with err
 * before it could start (in the calling process). */
int qrexecd_run(const char *name, bool foreground, int ready, const char *firewall,
                long long fw_next, struct qerr *err);

/* Starts the qrexec-daemon program (QUBES_QREXEC_DAEMON, else the one
 * beside this program) for `name` as a child of this process, spawned
 * without a copy of this process's memory, and returns once it holds the
 * VM's lock (the caller reaps its children when it sees fit). `firewall`
 * and `fw_next` as for qrexecd_run. With `answered`, the caller gets a
 * descriptor (close-on-exec, the caller's to close) for
 * qrexecd_wait_answer. */
int qrexecd_spawn(const char *name, const char *firewall, long long fw_next, int *answered,
                  struct qerr *err);
/* Waits, at most `timeout_ms`, until the agent has answered the daemon
 * (its socket then takes callers), without polling for the socket; a
 * daemon that ended first (the domain died, the agent's channel closed)
 * ends the wait at once, with an error that says so; so does a stop
 * signal (qmux_stopped). */
int qrexecd_wait_answer(const char *name, int answered, long timeout_ms, struct qerr *err);

#endif
