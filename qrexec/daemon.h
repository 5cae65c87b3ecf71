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

/* Takes the VM's qrexec lock ($RUN/vms/NAME/qrexec.lock, which then holds
 * the daemon's pid), and unless `foreground` detaches: the calling process
 * exits 0 once the lock is the daemon's, and the daemon logs to
 * $RUN/vms/NAME/qrexec.log. Then serves the channel until it closes.
 * Returns in the daemon: 0 when done, 1 when the channel could not be
 * had; -1 with err before it could start (in the calling process). */
int qrexecd_run(const char *name, bool foreground, struct qerr *err);

/* The daemon of `name` from a child of this process, without a new
 * program: returns once it holds the VM's lock and is on its own (as
 * qrexec_daemon_spawn, for a process that has the code loaded already).
 * `firewall`: the VM's firewall file when the caller knows it (the daemon
 * then reads it directly to begin with), or NULL. */
int qrexecd_fork(const char *name, const char *firewall, struct qerr *err);

#endif
