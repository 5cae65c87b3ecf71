/* The host's side of a VM's agent (guest/protocol.h): requests go to the
 * VM's qrexec-daemon (its socket QRT_QREXEC_SOCK), one connection each, so
 * any number run at once: a command or service with streamed input and
 * output, the VM's identity, power off. */
#ifndef QUBES_AGENT_CLIENT_H
#define QUBES_AGENT_CLIENT_H

#include "config.h"
#include "error.h"

struct agent_conn {
    char sock[108];             /* the daemon's socket */
    int fd;                     /* the connection for the next request, or -1 */
    long deadline;              /* CLOCK_MONOTONIC ms the request must end by; 0: none */
    long deadline_ms;           /* and how long it was given */
};

/* The host's own requests (identity, monitor layout) end within this; a
 * command or service runs as long as it runs. */
#define AGENT_REQUEST_MS 10000

/* The request that comes next must end within `ms` (0: no deadline). */
void agent_deadline(struct agent_conn *c, long ms);

/* Connects to the VM's qrexec-daemon, retrying until `timeout_ms` has
 * passed: the daemon listens once the guest's agent has answered it. */
int agent_connect(const char *sock, long timeout_ms, struct agent_conn *c, struct qerr *err);
void agent_close(struct agent_conn *c);
/* Runs `cmd` (by /bin/sh -c in the guest) as `user`; relays in_fd (or -1:
 * no input) to it and its output to out_fd/err_fd (or -1: discard).
 * *status gets its exit status. */
int agent_exec(struct agent_conn *c, const char *user, const char *cmd, int in_fd, int out_fd,
               int err_fd, int *status, struct qerr *err);
/* The same for a named service (/etc/qubes-rpc/SERVICE in the guest), told
 * which VM asks (`source`). */
int agent_service(struct agent_conn *c, const char *user, const char *service,
                  const char *source, int in_fd, int out_fd, int err_fd, int *status,
                  struct qerr *err);
/* Tells the guest its name and its network identity (mac "" : none;
 * ip_cidr "A.B.C.D/N") and gives it a fresh random seed; returns once it
 * has taken them. */
int agent_identity(struct agent_conn *c, const char *name, const char *mac, const char *ip_cidr,
                   const char *gateway, struct qerr *err);
/* Asks the guest to power off (returns once the agent acknowledged). */
int agent_shutdown(struct agent_conn *c, struct qerr *err);

/* Starts the VM's qrexec-daemon (QUBES_QREXEC_DAEMON, else qrexec-daemon
 * beside this program), which owns the agent's channel from now on and
 * ends with the VM. Returns once it runs on its own. */
int qrexec_daemon_spawn(const struct qubes_config *cfg, const char *name, struct qerr *err);

#endif
