#include "agent_client.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../guest/protocol.h"
#include "util.h"

static int send_frame(int fd, uint32_t type, const void *data, uint32_t len)
{
    struct qag_header h = { QAG_MAGIC, type, len };
    if (qwrite_all(fd, &h, sizeof h) < 0)
        return -1;
    return len ? qwrite_all(fd, data, len) : 0;
}

/* Reads exactly len bytes, waiting at most until `deadline` (ms, 0: none).
 * Returns 0, -1 on error or end of stream, -2 on timeout. */
static int read_all(int fd, void *buf, size_t len, long deadline)
{
    char *p = buf;
    while (len > 0) {
        if (deadline) {
            long left = deadline - qnow_ms();
            struct pollfd pfd = { .fd = fd, .events = POLLIN };
            if (left <= 0)
                return -2;
            int r = poll(&pfd, 1, (int)left);
            if (r < 0 && errno == EINTR)
                continue;
            if (r == 0)
                return -2;
        }
        ssize_t r = read(fd, p, len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        p += r;
        len -= (size_t)r;
    }
    return 0;
}

static int recv_frame(int fd, struct qag_header *h, char *payload, long deadline,
                      struct qerr *err)
{
    int r = read_all(fd, h, sizeof *h, deadline);
    if (r == -2)
        return -2;
    if (r < 0)
        return qerr_set(err, "the agent closed the connection");
    if (h->magic != QAG_MAGIC || h->len > QAG_MAX_PAYLOAD)
        return qerr_set(err, "garbled frame from the agent (type %u, length %u)", h->type, h->len);
    if (h->len && (r = read_all(fd, payload, h->len, deadline)) != 0)
        return r == -2 ? qerr_set(err, "the agent stopped mid-frame (%u bytes announced, the "
                                  "rest did not come within %d s)", h->len, AGENT_FRAME_MS / 1000)
                       : qerr_set(err, "the agent closed the connection mid-frame");
    return 0;
}

/* A HELLO that cannot be written by the deadline (the guest does not read
 * its port, and the socket's buffer is full) ends the attempt instead of
 * blocking: the socket is non-blocking until the session is open. */
static int send_hello(int fd, const uint64_t *nonce, long deadline)
{
    struct qag_header h = { QAG_MAGIC, QAG_HELLO, sizeof *nonce };
    char frame[sizeof h + sizeof *nonce];
    memcpy(frame, &h, sizeof h);
    memcpy(frame + sizeof h, nonce, sizeof *nonce);
    size_t done = 0;
    while (done < sizeof frame) {
        ssize_t w = write(fd, frame + done, sizeof frame - done);
        if (w > 0) {
            done += (size_t)w;
            continue;
        }
        if (w < 0 && errno != EAGAIN && errno != EINTR)
            return -1;
        long left = deadline - qnow_ms();
        struct pollfd p = { .fd = fd, .events = POLLOUT };
        if (left <= 0 || (poll(&p, 1, (int)left) == 0)) {
            errno = ETIMEDOUT;
            return -1;
        }
    }
    return 0;
}

static int try_session(const char *sock, long deadline, int *out)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    if (strlen(sock) >= sizeof addr.sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(addr.sun_path, sock);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    uint64_t nonce;
    if (getrandom(&nonce, sizeof nonce, 0) != sizeof nonce)
        nonce = (uint64_t)qnow_ms() ^ ((uint64_t)getpid() << 32);
    /* The same HELLO again until the agent answers it: soon at first (a
     * guest just restored now and then misses the first one), then every
     * 250 ms. */
    for (long wait = 20; qnow_ms() < deadline; wait = wait < 125 ? wait * 2 : 250) {
        if (send_hello(fd, &nonce, deadline) < 0)
            break;
        long until = qnow_ms() + wait;
        if (until > deadline)
            until = deadline;
        struct qag_header h;
        static char payload[QAG_MAX_PAYLOAD];
        int r;
        while ((r = recv_frame(fd, &h, payload, until, NULL)) == 0) {
            if (h.type == QAG_HELLO_ACK && h.len == 8 && memcmp(payload, &nonce, 8) == 0) {
                fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
                *out = fd;
                return 0;
            }
        }
        if (r == -1)
            break;
    }
    close(fd);
    errno = ETIMEDOUT;
    return -1;
}

void agent_deadline(struct agent_conn *c, long ms)
{
    c->deadline = ms > 0 ? qnow_ms() + ms : 0;
    c->deadline_ms = ms;
}

int agent_connect(const char *sock, long timeout_ms, struct agent_conn *c, struct qerr *err)
{
    long deadline = qnow_ms() + timeout_ms;
    int last = 0;
    c->fd = -1;
    agent_deadline(c, 0);
    while (qnow_ms() < deadline) {
        if (try_session(sock, deadline, &c->fd) == 0)
            return 0;
        last = errno;
        usleep(50000);
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

/* Sends a request made of NUL-terminated strings. */
static int send_request(struct agent_conn *c, uint32_t type, const char *const parts[],
                        int nparts, struct qerr *err)
{
    size_t len = 0;
    for (int i = 0; i < nparts; i++)
        len += strlen(parts[i]) + 1;
    if (len > QAG_MAX_PAYLOAD)
        return qerr_set(err, "request too long (%zu bytes)", len);
    char *req = malloc(len), *p = req;
    if (!req)
        return qerr_errno(err, ENOMEM, "agent request");
    for (int i = 0; i < nparts; i++) {
        size_t n = strlen(parts[i]) + 1;
        memcpy(p, parts[i], n);
        p += n;
    }
    int r = send_frame(c->fd, type, req, (uint32_t)len);
    free(req);
    if (r < 0)
        return qerr_errno(err, errno, "cannot send the request to the agent");
    return 0;
}

static int relay(struct agent_conn *c, int in_fd, int out_fd, int err_fd, int *status,
                 struct qerr *err);

int agent_exec(struct agent_conn *c, const char *user, const char *cmd, int in_fd, int out_fd,
               int err_fd, int *status, struct qerr *err)
{
    const char *parts[] = { user, cmd };
    if (send_request(c, QAG_EXEC, parts, 2, err) < 0)
        return -1;
    return relay(c, in_fd, out_fd, err_fd, status, err);
}

int agent_service(struct agent_conn *c, const char *user, const char *service,
                  const char *source, int in_fd, int out_fd, int err_fd, int *status,
                  struct qerr *err)
{
    const char *parts[] = { user, service, source };
    if (send_request(c, QAG_SERVICE, parts, 3, err) < 0)
        return -1;
    return relay(c, in_fd, out_fd, err_fd, status, err);
}

/* Streams input to the command and its output back until it exits, or
 * until c->deadline. */
static int relay(struct agent_conn *c, int in_fd, int out_fd, int err_fd, int *status,
                 struct qerr *err)
{
    if (in_fd < 0)
        send_frame(c->fd, QAG_STDIN, NULL, 0);

    static char payload[QAG_MAX_PAYLOAD];
    char buf[16384];
    for (;;) {
        /* The output too: a pipe whose reader is gone reports an error at
         * once, a socket a hang-up, and nobody wants the output any more. */
        struct pollfd p[3] = { { .fd = c->fd, .events = POLLIN },
                               { .fd = in_fd, .events = POLLIN },
                               { .fd = out_fd, .events = 0 } };
        long left = c->deadline ? c->deadline - qnow_ms() : -1;
        int r = c->deadline && left <= 0 ? 0 : poll(p, 3, left > INT_MAX ? INT_MAX : (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return qerr_errno(err, errno, "poll");
        if (r == 0)
            return qerr_set(err, "the agent did not answer within %ld s", c->deadline_ms / 1000);
        if (out_fd >= 0 && (p[2].revents & (POLLERR | POLLHUP)))
            return qerr_set(err, "the caller went away (its end of the output is closed)");
        if (in_fd >= 0 && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
            ssize_t n = read(in_fd, buf, sizeof buf);
            if (n > 0) {
                if (send_frame(c->fd, QAG_STDIN, buf, (uint32_t)n) < 0)
                    return qerr_errno(err, errno, "cannot send input to the agent");
            } else {
                send_frame(c->fd, QAG_STDIN, NULL, 0);
                in_fd = -1;
            }
        }
        if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            struct qag_header h;
            long frame_end = qnow_ms() + AGENT_FRAME_MS;
            if (c->deadline && c->deadline < frame_end)
                frame_end = c->deadline;
            if ((r = recv_frame(c->fd, &h, payload, frame_end, err)) < 0)
                return r == -2 ? qerr_set(err, "the agent stopped mid-frame (a header began, "
                                          "the rest did not come within %d s)",
                                          AGENT_FRAME_MS / 1000) : -1;
            switch (h.type) {
            case QAG_STDOUT:
            case QAG_STDERR: {
                int fd = h.type == QAG_STDOUT ? out_fd : err_fd;
                if (fd >= 0 && qwrite_all(fd, payload, h.len) < 0)
                    return errno == EPIPE
                               ? qerr_set(err, "the caller went away (its end of the output "
                                          "is closed)")
                               : qerr_errno(err, errno, "cannot write the command's output");
                break;
            }
            case QAG_EXIT: {
                int32_t code;
                if (h.len != sizeof code)
                    return qerr_set(err, "malformed EXIT frame from the agent (%u bytes, not %zu)",
                                    h.len, sizeof code);
                memcpy(&code, payload, sizeof code);
                *status = code;
                return 0;
            }
            case QAG_ERROR:
                return qerr_set(err, "the agent refused the command: %.*s", (int)h.len, payload);
            default:
                break;      /* a late HELLO_ACK and the like */
            }
        }
    }
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
    int rc = send_request(c, QAG_IDENTITY, parts, 5, err) < 0 ||
             relay(c, -1, -1, -1, &status, err) < 0 ? -1 : 0;
    agent_deadline(c, 0);
    if (rc < 0)
        return qerr_prefix(err, "cannot give the guest its identity");
    return status == 0 ? 0 : qerr_set(err, "the guest could not take its identity (status %d)",
                                      status);
}

int agent_shutdown(struct agent_conn *c, struct qerr *err)
{
    if (send_frame(c->fd, QAG_SHUTDOWN, NULL, 0) < 0)
        return qerr_errno(err, errno, "cannot ask the guest to power off");
    return 0;
}
