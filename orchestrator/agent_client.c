/* The host's callers of a VM's agent: each request is one connection to
 * the VM's qrexec-daemon (guest/protocol.h, "Local callers"), which puts
 * it on the channel as a session of its own beside any others. */
#include "agent_client.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../guest/protocol.h"
#include "../qrexec/mux.h"
#include "runtime.h"
#include "util.h"

extern char **environ;

static int dial(const char *sock)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    if (strlen(sock) >= sizeof addr.sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(addr.sun_path, sock);
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

void agent_deadline(struct agent_conn *c, long ms)
{
    c->deadline = ms > 0 ? qnow_ms() + ms : 0;
    c->deadline_ms = ms;
}

/* The daemon binds its socket once the agent has answered its HELLO, so
 * a connection that is accepted means a guest that is ready. */
int agent_connect(const char *sock, long timeout_ms, struct agent_conn *c, struct qerr *err)
{
    long deadline = qnow_ms() + timeout_ms;
    int last = 0;
    snprintf(c->sock, sizeof c->sock, "%s", sock);
    agent_deadline(c, 0);
    for (;;) {
        if ((c->fd = dial(sock)) >= 0)
            return 0;
        last = errno;
        if (qmux_stopped())
            return qerr_errno(err, EINTR, "stopped before the agent answered on %s", sock);
        if (qnow_ms() >= deadline)
            break;
        usleep(20000);
    }
    return qerr_errno(err, last ? last : ETIMEDOUT,
                      "the agent did not answer on %s within %ld s", sock, timeout_ms / 1000);
}

void agent_close(struct agent_conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

/* Sends the request (NUL-terminated parts) with the session's three
 * descriptors attached. */
static int send_request(struct agent_conn *c, uint32_t type, const char *const parts[],
                        int nparts, const int fds[3], struct qerr *err)
{
    static char msg[sizeof(struct qag_header) + QAG_MAX_PAYLOAD];
    size_t len = 0;
    for (int i = 0; i < nparts; i++) {
        size_t n = strlen(parts[i]) + 1;
        if (len + n > QAG_MAX_PAYLOAD)
            return qerr_set(err, "request too long (over %d bytes)", QAG_MAX_PAYLOAD);
        memcpy(msg + sizeof(struct qag_header) + len, parts[i], n);
        len += n;
    }
    struct qag_header h = { QAG_MAGIC, type, 0, (uint32_t)len };
    memcpy(msg, &h, sizeof h);
    if (c->fd < 0 && (c->fd = dial(c->sock)) < 0)
        return qerr_errno(err, errno, "cannot reach the VM's qrexec-daemon at %s", c->sock);
    union {
        struct cmsghdr h;
        char room[CMSG_SPACE(3 * sizeof(int))];
    } ctl;
    struct iovec iov = { msg, sizeof h + len };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.room,
                         .msg_controllen = sizeof ctl.room };
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(3 * sizeof(int));
    memcpy(CMSG_DATA(cm), fds, 3 * sizeof(int));
    ssize_t r;
    while ((r = sendmsg(c->fd, &mh, MSG_NOSIGNAL)) < 0 && errno == EINTR)
        ;
    if (r < 0)
        return qerr_errno(err, errno, "cannot send the request to the VM's qrexec-daemon");
    return 0;
}

/* The answer: EXIT (its status) or ERROR (its text). */
static int read_answer(struct agent_conn *c, int *status, struct qerr *err)
{
    char buf[sizeof(struct qag_header) + 4096 + 1];
    struct pollfd p = { c->fd, POLLIN, 0 };
    long left = c->deadline ? c->deadline - qnow_ms() : -1;
    if (c->deadline && (left <= 0 || poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left) == 0))
        return qerr_set(err, "the agent did not answer within %ld s", c->deadline_ms / 1000);
    ssize_t n;
    while ((n = recv(c->fd, buf, sizeof buf - 1, 0)) < 0 && errno == EINTR)
        ;
    agent_close(c);
    struct qag_header h;
    if (n < (ssize_t)sizeof h)
        return qerr_set(err, "the VM's qrexec-daemon ended the session without an answer "
                        "(the VM or its channel went away)");
    memcpy(&h, buf, sizeof h);
    size_t plen = (size_t)n - sizeof h;
    buf[n] = '\0';
    if (h.type == QAG_EXIT && plen == 4) {
        int32_t code;
        memcpy(&code, buf + sizeof h, 4);
        *status = code;
        return 0;
    }
    if (h.type == QAG_ERROR)
        return qerr_set(err, "the agent refused the command: %s", buf + sizeof h);
    return qerr_set(err, "malformed answer from the VM's qrexec-daemon (type %u, %zu bytes)",
                    h.type, plen);
}

/* One session with the caller's streams: through pipes of our own, so
 * that the caller's descriptors (a terminal shared with a shell) are never
 * made non-blocking. */
static int session(struct agent_conn *c, uint32_t type, const char *const parts[], int nparts,
                   int in_fd, int out_fd, int err_fd, int *status, struct qerr *err)
{
    int in[2] = { -1, -1 }, out[2] = { -1, -1 }, er[2] = { -1, -1 };
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 || pipe2(er, O_CLOEXEC) < 0) {
        qerr_errno(err, errno, "pipe");
        goto fail;
    }
    int fds[3] = { in[0], out[1], er[1] };
    if (send_request(c, type, parts, nparts, fds, err) < 0)
        goto fail;
    close(in[0]);
    close(out[1]);
    close(er[1]);
    int r = qmux_pump(in_fd, out_fd, err_fd, in[1], out[0], er[0], c->fd, c->deadline);
    if (r < 0) {
        int e = errno;
        agent_close(c);         /* the daemon ends the session in the guest */
        if (e == ETIMEDOUT)
            return qerr_set(err, "the agent did not answer within %ld s", c->deadline_ms / 1000);
        if (e == EPIPE)
            return qerr_set(err, "the caller went away (its end of the output is closed)");
        if (e == EINTR)
            return qerr_set(err, "stopped by a signal");
        return qerr_errno(err, e, "relaying the session");
    }
    return read_answer(c, status, err);
fail:
    for (int i = 0; i < 2; i++) {
        if (in[i] >= 0)
            close(in[i]);
        if (out[i] >= 0)
            close(out[i]);
        if (er[i] >= 0)
            close(er[i]);
    }
    return -1;
}

int agent_exec(struct agent_conn *c, const char *user, const char *cmd, int in_fd, int out_fd,
               int err_fd, int *status, struct qerr *err)
{
    const char *parts[] = { user, cmd };
    return session(c, QAG_EXEC, parts, 2, in_fd, out_fd, err_fd, status, err);
}

int agent_service(struct agent_conn *c, const char *user, const char *service,
                  const char *source, int in_fd, int out_fd, int err_fd, int *status,
                  struct qerr *err)
{
    const char *parts[] = { user, service, source };
    return session(c, QAG_SERVICE, parts, 3, in_fd, out_fd, err_fd, status, err);
}

int agent_identity(struct agent_conn *c, const char *name, const char *mac, const char *ip_cidr,
                   const char *gateway, struct qerr *err)
{
    unsigned char seed[32];
    char hex[2 * sizeof seed + 1];
    if (getrandom(seed, sizeof seed, 0) != (ssize_t)sizeof seed)
        return qerr_errno(err, errno, "no random seed for the guest");
    for (size_t i = 0; i < sizeof seed; i++)
        snprintf(hex + 2 * i, 3, "%02x", seed[i]);
    const char *parts[] = { name, mac, ip_cidr, gateway, hex };
    int status = 0;
    agent_deadline(c, AGENT_REQUEST_MS);
    int rc = session(c, QAG_IDENTITY, parts, 5, -1, -1, -1, &status, err);
    agent_deadline(c, 0);
    if (rc < 0)
        return qerr_prefix(err, "cannot give the guest its identity");
    return status == 0 ? 0 : qerr_set(err, "the guest could not take its identity (status %d)",
                                      status);
}

int agent_shutdown(struct agent_conn *c, struct qerr *err)
{
    int status = 0;
    agent_deadline(c, AGENT_REQUEST_MS);
    int rc = session(c, QAG_SHUTDOWN, NULL, 0, -1, -1, -1, &status, err);
    agent_deadline(c, 0);
    return rc < 0 ? qerr_prefix(err, "cannot ask the guest to power off") : 0;
}

int qrexec_daemon_spawn(const struct qubes_config *cfg, const char *name, struct qerr *err)
{
    char prog[PATH_MAX];
    if (qsibling_program("qrexec-daemon", "QUBES_QREXEC_DAEMON", prog, sizeof prog, err) < 0)
        return -1;
    (void)cfg;
    char *argv[] = { prog, (char *)name, NULL };
    /* It returns once it holds the VM's qrexec lock and is on its own. */
    return qrun_program(argv, err) < 0 ? qerr_prefix(err, "cannot start the qrexec daemon of "
                                                    "'%s'", name) : 0;
}
