/* The host side of the guest agent protocol (guest/protocol.h): connect to
 * a VM's agent socket, run a command with streamed input and output, ask
 * the guest to power off. */
#ifndef QUBES_AGENT_CLIENT_H
#define QUBES_AGENT_CLIENT_H

#include "error.h"

struct agent_conn {
    int fd;
    long deadline;              /* CLOCK_MONOTONIC ms the request must end by; 0: none */
    long deadline_ms;           /* and how long it was given */
};

/* The host's own requests (identity, monitor layout) end within this; a
 * command or service runs as long as it runs. */
#define AGENT_REQUEST_MS 10000
/* Once a frame has begun, all of it arrives within this, or the session
 * ends: a guest that stops mid-frame would have us read its data as
 * frames. */
#define AGENT_FRAME_MS 10000

/* The request that comes next must end within `ms` (0: no deadline). */
void agent_deadline(struct agent_conn *c, long ms);

/* Connects to the socket and completes the HELLO handshake, retrying until
 * `timeout_ms` has passed (the socket appears with QEMU, the agent answers
 * once the guest has booted). */
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

#endif
