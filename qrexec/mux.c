/* The session multiplexer (mux.h): frames in and out of one channel,
 * sessions and their streams, credit. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE             /* memmem */
#endif
#include "mux.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define OUTQ_HIGH (1u << 20)    /* sources stop reading above this */
#define OUTQ_STOP (4u << 20)    /* and the channel's input above this: a peer
                                   that floods requests and reads nothing */
#define INBUF (sizeof(struct qag_header) + QAG_MAX_PAYLOAD + 16384)
#define MAX_WATCH 512
#define HELLO_MAX_MS 250

struct qbuf {
    char *data;
    size_t off, len, cap;
};

struct stream {
    int fd;                     /* -1 once closed (or never there) */
    bool source;                /* we read fd and send the stream */
    bool done;                  /* source: end sent; sink: end written */
    bool eof;                   /* sink: the peer's end arrived */
    bool discard;               /* sink: nobody reads; data is credited and dropped */
    uint32_t credit;            /* source: bytes we may still send */
    uint32_t handed;            /* sink: written on and not yet credited */
    struct qbuf buf;            /* sink: received and not yet written */
};

struct session {
    uint32_t sid;
    bool mine;                  /* we opened it */
    bool ended;                 /* mine: EXIT/ERROR came; served: the process is gone */
    bool served;                /* a peer's session handed a process */
    int status;
    char *error;
    void *sctx;
    pid_t pid;
    int pidfd;
    struct stream st[3];        /* STDIN, STDOUT, STDERR */
};

struct watch {
    int fd;
    short events;
    bool gone;
    qmux_fd_cb cb;
    void *arg;
};

struct qmux {
    int chan;
    enum qmux_role role;
    const struct qmux_ops *ops;
    void *ctx;
    bool scanning;              /* host: for the HELLO_ACK; guest: for a HELLO */
    bool stop, lost;
    bool port_down;             /* guest: no host on the port just now */
    long port_retry;
    uint64_t nonce;
    long next_hello;
    int hello_gap;
    uint32_t next_sid;
    struct qbuf out;            /* whole frames; the head one written up to `sent` */
    size_t sent;
    char *in;
    size_t inlen;
    struct session *s[QMUX_MAX_SESSIONS];
    struct watch w[MAX_WATCH];
    int nw;
};

long qmux_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000L + t.tv_nsec / 1000000;
}

static void logf_(struct qmux *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(struct qmux *m, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (m->ops->log)
        m->ops->log(m->ctx, msg);
}

/* ---- buffers ---- */

static int qbuf_reserve(struct qbuf *b, size_t more)
{
    if (b->off && b->off + b->len + more > b->cap) {
        memmove(b->data, b->data + b->off, b->len);
        b->off = 0;
    }
    if (b->len + more <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more)
        cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d)
        return -1;
    b->data = d;
    b->cap = cap;
    return 0;
}

static void qbuf_consume(struct qbuf *b, size_t n)
{
    b->off += n;
    b->len -= n;
    if (b->len == 0)
        b->off = 0;
}

static void qbuf_free(struct qbuf *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

static void set_nonblock(int fd)
{
    if (fd >= 0)
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* ---- frames out ---- */

int qmux_send_raw(struct qmux *m, uint32_t type, uint32_t sid, const void *data, uint32_t len)
{
    struct qag_header h = { QAG_MAGIC, type, sid, len };
    if (qbuf_reserve(&m->out, sizeof h + len) < 0)
        return -1;
    char *p = m->out.data + m->out.off + m->out.len;
    memcpy(p, &h, sizeof h);
    if (len)
        memcpy(p + sizeof h, data, len);
    m->out.len += sizeof h + len;
    return 0;
}

static void send_u32(struct qmux *m, uint32_t type, uint32_t sid, uint32_t v)
{
    qmux_send_raw(m, type, sid, &v, sizeof v);
}

static void send_credit(struct qmux *m, uint32_t sid, uint32_t stream, uint32_t bytes)
{
    uint32_t c[2] = { stream, bytes };
    qmux_send_raw(m, QAG_CREDIT, sid, c, sizeof c);
}

static void send_hello(struct qmux *m)
{
    qmux_send_raw(m, QAG_HELLO, 0, &m->nonce, sizeof m->nonce);
    m->next_hello = qmux_now_ms() + m->hello_gap;
    m->hello_gap = m->hello_gap * 2 > HELLO_MAX_MS ? HELLO_MAX_MS : m->hello_gap * 2;
}

/* ---- sessions ---- */

static struct session *find(struct qmux *m, uint32_t sid)
{
    for (int i = 0; i < QMUX_MAX_SESSIONS; i++)
        if (m->s[i] && m->s[i]->sid == sid)
            return m->s[i];
    return NULL;
}

static struct session *add(struct qmux *m, uint32_t sid, bool mine)
{
    for (int i = 0; i < QMUX_MAX_SESSIONS; i++) {
        if (m->s[i])
            continue;
        struct session *s = calloc(1, sizeof *s);
        if (!s)
            return NULL;
        s->sid = sid;
        s->mine = mine;
        s->pid = -1;
        s->pidfd = -1;
        for (int k = 0; k < 3; k++) {
            s->st[k].fd = -1;
            s->st[k].source = mine ? k == 0 : k != 0;
            s->st[k].credit = QAG_WINDOW;
        }
        m->s[i] = s;
        return s;
    }
    return NULL;
}

static void drop(struct qmux *m, struct session *s)
{
    for (int i = 0; i < QMUX_MAX_SESSIONS; i++)
        if (m->s[i] == s)
            m->s[i] = NULL;
    for (int k = 0; k < 3; k++) {
        close_fd(&s->st[k].fd);
        qbuf_free(&s->st[k].buf);
    }
    close_fd(&s->pidfd);
    free(s->error);
    free(s);
}

static void kill_process(struct session *s)
{
    if (s->pid > 0) {
        kill(-s->pid, SIGKILL);
        kill(s->pid, SIGKILL);
        while (waitpid(s->pid, NULL, 0) < 0 && errno == EINTR)
            ;
        s->pid = -1;
    }
}

/* Every session ends: ours are told why, the peer's processes killed. */
static void reset_sessions(struct qmux *m, const char *why)
{
    for (int i = 0; i < QMUX_MAX_SESSIONS; i++) {
        struct session *s = m->s[i];
        if (!s)
            continue;
        if (s->mine) {
            void *sctx = s->sctx;
            drop(m, s);
            if (m->ops->ended)
                m->ops->ended(m, sctx, -1, why);
        } else {
            kill_process(s);
            drop(m, s);
        }
    }
}

/* Drops what is queued but the rest of a frame begun on the channel: the
 * peer must read it whole, or it would take our next frame for its end. */
static void drop_queue(struct qmux *m)
{
    size_t keep = 0;
    if (m->sent) {
        struct qag_header h;
        memcpy(&h, m->out.data + m->out.off, sizeof h);
        keep = sizeof h + h.len;
    }
    m->out.len = keep;
    if (!keep)
        m->out.off = 0;
}

static void start_scan(struct qmux *m)
{
    m->scanning = true;
    drop_queue(m);
    if (m->role == QMUX_HOST) {
        m->nonce = ((uint64_t)rand() << 32) ^ (uint64_t)rand() ^ (uint64_t)qmux_now_ms();
        m->hello_gap = 20;
        send_hello(m);
    }
}

void qmux_reset(struct qmux *m, const char *why)
{
    logf_(m, "channel reset: %s", why);
    reset_sessions(m, why);
    start_scan(m);
}

/* A breach by the peer in one session: that session ends. */
static void breach(struct qmux *m, struct session *s, const char *what)
{
    logf_(m, "session %u: %s; session ended", s->sid, what);
    if (s->mine) {
        qmux_send_raw(m, QAG_CLOSE, s->sid, NULL, 0);
        void *sctx = s->sctx;
        drop(m, s);
        if (m->ops->ended)
            m->ops->ended(m, sctx, -1, what);
    } else {
        kill_process(s);
        qmux_send_raw(m, QAG_ERROR, s->sid, what, (uint32_t)strlen(what));
        drop(m, s);
    }
}

/* Ends what can end: ours once the end came and the output is written, the
 * peer's once the process is gone and its output sent. */
static void settle(struct qmux *m, struct session *s)
{
    if (!s->ended)
        return;
    if (s->mine) {
        if (!s->st[1].done || !s->st[2].done)
            return;
        void *sctx = s->sctx;
        int status = s->status;
        char *error = s->error;
        s->error = NULL;
        drop(m, s);
        if (m->ops->ended)
            m->ops->ended(m, sctx, error ? -1 : status, error);
        free(error);
    } else {
        if (!s->st[1].done || !s->st[2].done)
            return;
        send_u32(m, QAG_EXIT, s->sid, (uint32_t)s->status);
        drop(m, s);
    }
}

/* ---- streams ---- */

/* Reads what the credit allows from a source and sends it. `draining`: the
 * process is gone, so nothing more than what is there now will come. */
static void pump_source(struct qmux *m, struct session *s, int k, bool draining)
{
    struct stream *t = &s->st[k];
    uint32_t type = QAG_STDIN + (uint32_t)k;
    while (!t->done && t->credit > 0) {
        size_t want = t->credit < QAG_MAX_DATA ? t->credit : QAG_MAX_DATA;
        ssize_t r = -1;
        if (t->fd >= 0) {
            if (qbuf_reserve(&m->out, sizeof(struct qag_header) + want) < 0)
                return;
            char *p = m->out.data + m->out.off + m->out.len;
            r = read(t->fd, p + sizeof(struct qag_header), want);
            if (r > 0) {
                struct qag_header h = { QAG_MAGIC, type, s->sid, (uint32_t)r };
                memcpy(p, &h, sizeof h);
                m->out.len += sizeof h + (size_t)r;
                t->credit -= (uint32_t)r;
                if (m->out.len > OUTQ_HIGH)
                    return;
                continue;
            }
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0 && errno == EAGAIN && !draining)
                return;
        }
        qmux_send_raw(m, type, s->sid, NULL, 0);
        t->done = true;
        close_fd(&t->fd);
    }
}

/* Writes a sink's buffer on; credits what went. */
static void flush_sink(struct qmux *m, struct session *s, int k)
{
    struct stream *t = &s->st[k];
    uint32_t type = QAG_STDIN + (uint32_t)k;
    while (t->buf.len && !t->discard) {
        ssize_t r = write(t->fd, t->buf.data + t->buf.off, t->buf.len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno == EAGAIN)
            break;
        if (r <= 0) {           /* nobody reads: what comes is dropped */
            t->discard = true;
            close_fd(&t->fd);
            t->handed += (uint32_t)t->buf.len;
            qbuf_consume(&t->buf, t->buf.len);
            break;
        }
        qbuf_consume(&t->buf, (size_t)r);
        t->handed += (uint32_t)r;
    }
    if (t->handed && (t->buf.len == 0 || t->handed >= QAG_WINDOW / 4) && !t->eof) {
        send_credit(m, s->sid, type, t->handed);
        t->handed = 0;
    }
    if (t->eof && t->buf.len == 0 && !t->done) {
        t->done = true;
        close_fd(&t->fd);
    }
}

static void take_data(struct qmux *m, struct session *s, uint32_t type, const char *p, uint32_t len)
{
    int k = (int)(type - QAG_STDIN);
    struct stream *t = &s->st[k];
    if (t->source) {
        breach(m, s, "data on a stream that goes the other way");
        return;
    }
    if (t->eof) {
        if (len)
            breach(m, s, "data after the end of its stream");
        return;
    }
    if (len == 0) {
        t->eof = true;
        flush_sink(m, s, k);
        settle(m, s);
        return;
    }
    if ((size_t)t->buf.len + t->handed + len > QAG_WINDOW) {
        breach(m, s, "data beyond the credit given");
        return;
    }
    if (t->discard || t->fd < 0) {
        t->discard = true;
        t->handed += len;
    } else {
        if (qbuf_reserve(&t->buf, len) < 0) {
            breach(m, s, "out of memory");
            return;
        }
        memcpy(t->buf.data + t->buf.off + t->buf.len, p, len);
        t->buf.len += len;
    }
    flush_sink(m, s, k);
}

/* ---- frames in ---- */

static void take_request(struct qmux *m, const struct qag_header *h, const char *p)
{
    bool from_guest = m->role == QMUX_HOST;
    bool allowed = from_guest ? h->type == QAG_CALL
                              : h->type == QAG_EXEC || h->type == QAG_SERVICE ||
                                    h->type == QAG_IDENTITY || h->type == QAG_SHUTDOWN;
    if (!allowed) {
        logf_(m, "request type %u from the %s refused", h->type, from_guest ? "guest" : "host");
        qmux_send_raw(m, QAG_ERROR, h->session, "request not allowed", 19);
        return;
    }
    if (h->session == 0 || !!(h->session & QAG_GUEST_SESSION) != from_guest) {
        logf_(m, "request with session id %u refused: not the peer's range", h->session);
        return;
    }
    if (find(m, h->session)) {
        logf_(m, "request on session %u that is open; dropped", h->session);
        return;
    }
    int theirs = 0;
    for (int i = 0; i < QMUX_MAX_SESSIONS; i++)
        theirs += m->s[i] && !m->s[i]->mine;
    struct session *s = theirs < QMUX_MAX_PEER_SESSIONS ? add(m, h->session, false) : NULL;
    if (!s) {
        logf_(m, "session %u refused: too many sessions", h->session);
        qmux_send_raw(m, QAG_ERROR, h->session, "too many sessions", 17);
        return;
    }
    for (int k = 1; k < 3; k++)
        s->st[k].done = true;   /* until qmux_serve hands it output */
    s->st[0].discard = true;
    m->ops->request(m, h->session, h->type, p, h->len, m->ctx);
}

static void take_frame(struct qmux *m, const struct qag_header *h, char *p)
{
    char save = p[h->len];
    p[h->len] = '\0';
    struct session *s = h->session ? find(m, h->session) : NULL;
    switch (h->type) {
    case QAG_HELLO:
        if (m->role == QMUX_GUEST && h->len == 8) {
            reset_sessions(m, "the host opened the channel again");
            drop_queue(m);
            qmux_send_raw(m, QAG_HELLO_ACK, 0, p, 8);
        }
        break;
    case QAG_HELLO_ACK:
        break;                  /* a late answer to a HELLO sent again */
    case QAG_STDIN:
    case QAG_STDOUT:
    case QAG_STDERR:
        if (s)
            take_data(m, s, h->type, p, h->len);
        break;
    case QAG_CREDIT:
        if (s && h->len == 8) {
            uint32_t c[2];
            memcpy(c, p, 8);
            if (c[0] >= QAG_STDIN && c[0] <= QAG_STDERR && s->st[c[0] - QAG_STDIN].source) {
                struct stream *t = &s->st[c[0] - QAG_STDIN];
                uint64_t credit = (uint64_t)t->credit + c[1];
                t->credit = credit > QAG_WINDOW ? QAG_WINDOW : (uint32_t)credit;
            }
        }
        break;
    case QAG_EXIT:
    case QAG_ERROR:
        if (s && s->mine && !s->ended) {
            if (h->type == QAG_EXIT && h->len != 4) {
                breach(m, s, "an EXIT frame without a 4-byte status");
                break;
            }
            s->ended = true;
            if (h->type == QAG_EXIT) {
                int32_t code;
                memcpy(&code, p, 4);
                s->status = code;
            } else {
                s->error = strdup(h->len ? p : "refused");
            }
            close_fd(&s->st[0].fd);
            s->st[0].done = true;
            for (int k = 1; k < 3; k++) {
                s->st[k].eof = true;
                flush_sink(m, s, k);
            }
            settle(m, s);
        }
        break;
    case QAG_CLOSE:
        if (s && !s->mine) {
            kill_process(s);
            drop(m, s);
        }
        break;
    default:
        if (!s)
            take_request(m, h, p);
        else
            logf_(m, "frame type %u on open session %u dropped", h->type, h->session);
        break;
    }
    p[h->len] = save;
}

/* Scans the input from `pos` for the frame that opens the channel;
 * returns where reading goes on. */
static size_t scan(struct qmux *m, size_t pos)
{
    uint32_t want = m->role == QMUX_HOST ? QAG_HELLO_ACK : QAG_HELLO;
    struct qag_header pat = { QAG_MAGIC, want, 0, 8 };
    while (m->scanning) {
        char *hit = memmem(m->in + pos, m->inlen - pos, &pat, sizeof pat);
        if (!hit) {
            size_t left = m->inlen - pos;
            return m->inlen - (left < sizeof pat ? left : sizeof pat - 1);
        }
        pos = (size_t)(hit - m->in);
        if (m->inlen - pos < sizeof pat + 8)
            return pos;
        char *nonce = hit + sizeof pat;
        if (m->role == QMUX_HOST) {
            if (memcmp(nonce, &m->nonce, 8) == 0) {
                m->scanning = false;
                if (m->ops->ready)
                    m->ops->ready(m, m->ctx);
            }
        } else {
            m->scanning = false;
            drop_queue(m);
            qmux_send_raw(m, QAG_HELLO_ACK, 0, nonce, 8);
        }
        pos += sizeof pat + 8;
    }
    return pos;
}

/* The guest: no host on the port (it reports a hang-up, or reads end):
 * what was under way ends, and the next host starts afresh. */
static void port_gone(struct qmux *m)
{
    m->port_down = true;
    m->port_retry = qmux_now_ms() + 50;
    if (qmux_sessions(m))
        reset_sessions(m, "the host went away");
    m->inlen = 0;
    start_scan(m);
}

/* The host: the channel has ended. */
static void chan_lost(struct qmux *m, const char *why)
{
    logf_(m, "the channel closed%s%s", why ? ": " : "", why ? why : "");
    reset_sessions(m, "the VM's channel closed");
    m->lost = m->stop = true;
    if (m->ops->lost)
        m->ops->lost(m, m->ctx);
}

static void take_input(struct qmux *m);

static void read_channel(struct qmux *m)
{
    ssize_t r;
    while ((r = read(m->chan, m->in + m->inlen, INBUF - m->inlen)) < 0 && errno == EINTR)
        ;
    if (r == 0 || (r < 0 && errno != EAGAIN)) {
        if (m->role == QMUX_GUEST)
            port_gone(m);
        else
            chan_lost(m, r < 0 ? strerror(errno) : NULL);
        return;
    }
    if (r < 0)
        return;
    m->inlen += (size_t)r;
    take_input(m);
}

/* Frames out of what has arrived. */
static void take_input(struct qmux *m)
{
    size_t pos = 0;
    while (pos < m->inlen) {
        if (m->scanning) {
            pos = scan(m, pos);
            if (m->scanning)
                break;
            continue;
        }
        struct qag_header h;
        if (m->inlen - pos < sizeof h)
            break;
        memcpy(&h, m->in + pos, sizeof h);
        if (h.magic != QAG_MAGIC || h.len > QAG_MAX_PAYLOAD) {
            logf_(m, "out of step (magic %08x, length %u): channel reset", h.magic, h.len);
            reset_sessions(m, "the channel went out of step");
            start_scan(m);
            pos += 1;
            continue;
        }
        if (m->inlen - pos < sizeof h + h.len)
            break;
        take_frame(m, &h, m->in + pos + sizeof h);
        pos += sizeof h + h.len;
    }
    memmove(m->in, m->in + pos, m->inlen - pos);
    m->inlen -= pos;
}

static void write_channel(struct qmux *m)
{
    while (m->out.len > m->sent) {
        ssize_t r = write(m->chan, m->out.data + m->out.off + m->sent, m->out.len - m->sent);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno == EAGAIN)
            return;
        if (r <= 0) {
            if (m->role == QMUX_GUEST)
                port_gone(m);
            else
                chan_lost(m, strerror(errno));
            return;
        }
        m->sent += (size_t)r;
        while (m->out.len) {    /* whole frames written leave the queue */
            struct qag_header h;
            memcpy(&h, m->out.data + m->out.off, sizeof h);
            if (m->sent < sizeof h + h.len)
                break;
            m->sent -= sizeof h + h.len;
            qbuf_consume(&m->out, sizeof h + h.len);
        }
    }
}

/* ---- the API ---- */

void qmux_feed(struct qmux *m, const void *data, size_t len)
{
    while (len && !m->stop) {
        size_t n = INBUF - m->inlen < len ? INBUF - m->inlen : len;
        memcpy(m->in + m->inlen, data, n);
        m->inlen += n;
        data = (const char *)data + n;
        len -= n;
        take_input(m);
    }
}

struct qmux *qmux_new(int chan, enum qmux_role role, const struct qmux_ops *ops, void *ctx)
{
    struct qmux *m = calloc(1, sizeof *m);
    if (!m || !(m->in = malloc(INBUF + 1))) {
        free(m);
        return NULL;
    }
    m->chan = chan;
    m->role = role;
    m->ops = ops;
    m->ctx = ctx;
    m->next_sid = 1;
    srand((unsigned)(getpid() ^ qmux_now_ms()));
    set_nonblock(chan);
    start_scan(m);
    return m;
}

void qmux_free(struct qmux *m)
{
    if (!m)
        return;
    for (int i = 0; i < QMUX_MAX_SESSIONS; i++)
        if (m->s[i]) {
            kill_process(m->s[i]);
            drop(m, m->s[i]);
        }
    qbuf_free(&m->out);
    free(m->in);
    free(m);
}

int qmux_watch(struct qmux *m, int fd, short events, qmux_fd_cb cb, void *arg)
{
    for (int i = 0; i < m->nw; i++)
        if (m->w[i].fd == fd && !m->w[i].gone) {
            m->w[i].events = events;
            m->w[i].cb = cb;
            m->w[i].arg = arg;
            return 0;
        }
    if (m->nw == MAX_WATCH)
        return -1;
    m->w[m->nw++] = (struct watch){ fd, events, false, cb, arg };
    return 0;
}

void qmux_unwatch(struct qmux *m, int fd)
{
    for (int i = 0; i < m->nw; i++)
        if (m->w[i].fd == fd)
            m->w[i].gone = true;
}

void qmux_stop(struct qmux *m)
{
    m->stop = true;
}

bool qmux_ready(const struct qmux *m)
{
    return !m->scanning && !m->lost;
}

size_t qmux_queued(const struct qmux *m)
{
    return m->out.len - m->sent;
}

int qmux_sessions(const struct qmux *m)
{
    int n = 0;
    for (int i = 0; i < QMUX_MAX_SESSIONS; i++)
        n += m->s[i] != NULL;
    return n;
}

uint32_t qmux_call(struct qmux *m, uint32_t type, const void *req, uint32_t len, int in_fd,
                   int out_fd, int err_fd, void *sctx)
{
    struct session *s = NULL;
    uint32_t sid = 0;
    if (qmux_ready(m) && len <= QAG_MAX_PAYLOAD) {
        for (int tries = 0; tries < 0x10000 && !sid; tries++) {
            uint32_t c = m->next_sid++ & ~QAG_GUEST_SESSION;
            if (c == 0)
                continue;
            c |= m->role == QMUX_GUEST ? QAG_GUEST_SESSION : 0;
            if (!find(m, c))
                sid = c;
        }
        s = sid ? add(m, sid, true) : NULL;
    }
    if (!s) {
        close_fd(&in_fd);
        close_fd(&out_fd);
        close_fd(&err_fd);
        return 0;
    }
    s->sctx = sctx;
    int fds[3] = { in_fd, out_fd, err_fd };
    for (int k = 0; k < 3; k++) {
        s->st[k].fd = fds[k];
        set_nonblock(fds[k]);
        s->st[k].discard = k > 0 && fds[k] < 0;
    }
    qmux_send_raw(m, type, sid, req, len);
    pump_source(m, s, 0, false);
    return sid;
}

void qmux_cancel(struct qmux *m, uint32_t sid)
{
    struct session *s = find(m, sid);
    if (s && s->mine) {
        qmux_send_raw(m, QAG_CLOSE, sid, NULL, 0);
        drop(m, s);
    }
}

static struct session *peer_session(struct qmux *m, uint32_t sid)
{
    struct session *s = find(m, sid);
    return s && !s->mine && !s->served ? s : NULL;
}

int qmux_serve(struct qmux *m, uint32_t sid, int in_fd, int out_fd, int err_fd, pid_t pid)
{
    struct session *s = peer_session(m, sid);
    if (!s) {
        close_fd(&in_fd);
        close_fd(&out_fd);
        close_fd(&err_fd);
        struct session gone = { .pid = pid };
        kill_process(&gone);
        return -1;
    }
    s->served = true;
    s->pid = pid;
    s->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    int fds[3] = { in_fd, out_fd, err_fd };
    for (int k = 0; k < 3; k++) {
        s->st[k].fd = fds[k];
        set_nonblock(fds[k]);
    }
    s->st[0].discard = in_fd < 0;
    s->st[1].done = out_fd < 0;
    s->st[2].done = err_fd < 0;
    for (int k = 1; k < 3; k++)
        if (fds[k] < 0)
            qmux_send_raw(m, QAG_STDIN + (uint32_t)k, sid, NULL, 0);
    return 0;
}

void qmux_answer(struct qmux *m, uint32_t sid, int status)
{
    struct session *s = peer_session(m, sid);
    if (s) {
        send_u32(m, QAG_EXIT, sid, (uint32_t)status);
        drop(m, s);
    }
}

void qmux_refuse(struct qmux *m, uint32_t sid, const char *msg)
{
    struct session *s = peer_session(m, sid);
    if (s) {
        qmux_send_raw(m, QAG_ERROR, sid, msg, (uint32_t)strlen(msg));
        drop(m, s);
    }
}

/* The process of a served session is gone: its status, and what it left
 * in its pipes is sent. */
static void reap(struct session *s, bool block)
{
    int st;
    pid_t r;
    while ((r = waitpid(s->pid, &st, block ? 0 : WNOHANG)) < 0 && errno == EINTR)
        ;
    if (r != s->pid)
        return;
    s->pid = -1;
    close_fd(&s->pidfd);
    s->ended = true;
    s->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* What poll's entry i stands for. */
struct slot {
    int kind;                   /* 0 channel, 1 stream, 2 pidfd, 3 watch */
    uint32_t sid;
    int k;
};

int qmux_run(struct qmux *m)
{
    int cap = 1 + QMUX_MAX_SESSIONS * 4 + MAX_WATCH;
    struct pollfd *pf = malloc(sizeof *pf * (size_t)cap);
    struct slot *sl = malloc(sizeof *sl * (size_t)cap);
    if (!pf || !sl) {
        free(pf);
        free(sl);
        return -1;
    }
    m->stop = false;
    while (!m->stop) {
        long now = qmux_now_ms(), timeout = -1;
        int n = 0;
        /* Served sessions whose process has gone: drain and end. */
        for (int i = 0; i < QMUX_MAX_SESSIONS; i++) {
            struct session *s = m->s[i];
            if (s && !s->mine && s->served) {
                if (!s->ended && s->pidfd < 0 && s->pid > 0) {
                    reap(s, false);
                    timeout = 50;
                }
                if (s->ended) {
                    for (int k = 1; k < 3; k++)
                        pump_source(m, s, k, true);
                    settle(m, s);
                }
            }
        }
        if (m->port_down && now >= m->port_retry)
            m->port_down = false;
        if (!m->port_down) {
            pf[n] = (struct pollfd){ m->chan, 0, 0 };
            if (m->out.len < OUTQ_STOP)
                pf[n].events |= POLLIN;
            if (m->out.len > m->sent)
                pf[n].events |= POLLOUT;
            sl[n++] = (struct slot){ 0, 0, 0 };
        } else {
            timeout = m->port_retry - now;
        }
        if (m->scanning && m->role == QMUX_HOST) {
            if (now >= m->next_hello)
                send_hello(m);
            long t = m->next_hello - now;
            timeout = timeout < 0 || t < timeout ? (t < 0 ? 0 : t) : timeout;
        }
        bool room = m->out.len <= OUTQ_HIGH && !m->scanning;
        for (int i = 0; i < QMUX_MAX_SESSIONS; i++) {
            struct session *s = m->s[i];
            if (!s)
                continue;
            for (int k = 0; k < 3; k++) {
                struct stream *t = &s->st[k];
                short ev = 0;
                if (t->fd < 0)
                    continue;
                if (t->source && !t->done && t->credit > 0 && room && !(s->ended && !s->mine))
                    ev = POLLIN;
                if (!t->source && t->buf.len)
                    ev = POLLOUT;
                if (ev) {
                    pf[n] = (struct pollfd){ t->fd, ev, 0 };
                    sl[n++] = (struct slot){ 1, s->sid, k };
                }
            }
            if (s->pidfd >= 0 && !s->ended) {
                pf[n] = (struct pollfd){ s->pidfd, POLLIN, 0 };
                sl[n++] = (struct slot){ 2, s->sid, 0 };
            }
        }
        int nwatch = m->nw;
        for (int i = 0; i < nwatch; i++) {
            if (m->w[i].gone)
                continue;
            pf[n] = (struct pollfd){ m->w[i].fd, m->w[i].events, 0 };
            sl[n++] = (struct slot){ 3, (uint32_t)i, 0 };
        }
        int r = poll(pf, (nfds_t)n, (int)timeout);
        if (r < 0 && errno != EINTR)
            break;
        for (int i = 0; r > 0 && i < n && !m->stop; i++) {
            if (!pf[i].revents)
                continue;
            if (sl[i].kind == 0) {
                if (m->role == QMUX_GUEST && (pf[i].revents & POLLHUP) &&
                    !(pf[i].revents & POLLIN)) {
                    port_gone(m);
                    continue;
                }
                if (pf[i].revents & POLLOUT)
                    write_channel(m);
                if (pf[i].revents & (POLLIN | POLLHUP | POLLERR))
                    read_channel(m);
                continue;
            }
            if (sl[i].kind == 3) {
                struct watch *w = &m->w[sl[i].sid];
                if (!w->gone)
                    w->cb(m, w->fd, pf[i].revents, w->arg);
                continue;
            }
            struct session *s = find(m, sl[i].sid);
            if (!s)
                continue;
            if (sl[i].kind == 2) {
                reap(s, false);
            } else if (s->st[sl[i].k].source) {
                pump_source(m, s, sl[i].k, false);
            } else {
                flush_sink(m, s, sl[i].k);
                settle(m, s);
            }
        }
        /* Watches that went are forgotten once nothing refers to them. */
        int j = 0;
        for (int i = 0; i < m->nw; i++)
            if (!m->w[i].gone)
                m->w[j++] = m->w[i];
        m->nw = j;
        if (m->out.len > m->sent && !m->port_down && !m->stop)
            write_channel(m);
    }
    if (!m->lost && !m->port_down)
        write_channel(m);       /* what can go at once, before we return */
    free(pf);
    free(sl);
    return m->lost ? -1 : 0;
}

/* ---- the callers' relay ---- */

static volatile sig_atomic_t *stop_flag;
#define STOP_POLL_MS 500

void qmux_stop_on(volatile sig_atomic_t *flag)
{
    stop_flag = flag;
}

bool qmux_stopped(void)
{
    return stop_flag && *stop_flag;
}

/* Writes all of it (the caller's descriptor may be blocking or not) by
 * the deadline: -1 with ETIMEDOUT after it, -1 when the reader is gone,
 * -1 with EINTR once the stop flag is set. */
static int write_blocking(int fd, const char *p, size_t len, long deadline_ms)
{
    while (len) {
        if (qmux_stopped()) {
            errno = EINTR;
            return -1;
        }
        long left = deadline_ms ? deadline_ms - qmux_now_ms() : 1000;
        if (left <= 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        struct pollfd pfd = { fd, POLLOUT, 0 };
        if (poll(&pfd, 1, stop_flag && left > STOP_POLL_MS ? STOP_POLL_MS : (int)left) == 0)
            continue;
        /* PIPE_BUF at most when it must not block past the deadline. */
        ssize_t r = write(fd, p, deadline_ms && len > 4096 ? 4096 : len);
        if (r < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (r <= 0)
            return -1;
        p += r;
        len -= (size_t)r;
    }
    return 0;
}

int qmux_pump(int user_in, int user_out, int user_err, int to_session, int from_out,
              int from_err, int ctl, long deadline_ms)
{
    static char inb[65536], outb[65536];
    size_t inlen = 0, inoff = 0;
    int from[2] = { from_out, from_err }, to[2] = { user_out, user_err };
    set_nonblock(to_session);
    if (user_in < 0)
        close_fd(&to_session);
    for (;;) {
        struct pollfd p[5];
        int n = 0, idx_in = -1, idx_to = -1, idx_ctl = -1, idx_from[2] = { -1, -1 }, idx_uout = -1;
        if (to_session >= 0 && inlen == 0 && user_in >= 0) {
            idx_in = n;
            p[n++] = (struct pollfd){ user_in, POLLIN, 0 };
        }
        if (to_session >= 0 && inlen > 0) {
            idx_to = n;
            p[n++] = (struct pollfd){ to_session, POLLOUT, 0 };
        }
        for (int k = 0; k < 2; k++)
            if (from[k] >= 0) {
                idx_from[k] = n;
                p[n++] = (struct pollfd){ from[k], POLLIN, 0 };
            }
        /* A caller that goes away while the service is silent is seen at
         * once: a pipe whose reader closed reports POLLERR, a socket or a
         * terminal POLLHUP, with no event asked for. */
        if (from[0] >= 0 && to[0] >= 0) {
            idx_uout = n;
            p[n++] = (struct pollfd){ to[0], 0, 0 };
        }
        if (from[0] < 0 && from[1] < 0) {
            if (ctl < 0)
                break;
            idx_ctl = n;
            p[n++] = (struct pollfd){ ctl, POLLIN, 0 };
        }
        long timeout = -1;
        if (deadline_ms && (timeout = deadline_ms - qmux_now_ms()) <= 0)
            goto timeout;
        if (stop_flag && (timeout < 0 || timeout > STOP_POLL_MS))
            timeout = STOP_POLL_MS;     /* a signal just before the poll */
        if (qmux_stopped())
            goto stopped;
        int r = poll(p, (nfds_t)n, (int)timeout);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            break;
        if (idx_ctl >= 0 && p[idx_ctl].revents)
            break;
        if (idx_uout >= 0 && (p[idx_uout].revents & (POLLERR | POLLHUP | POLLNVAL)))
            goto gone;
        if (idx_in >= 0 && p[idx_in].revents) {
            ssize_t got = read(user_in, inb, sizeof inb);
            if (got > 0) {
                inlen = (size_t)got;
                inoff = 0;
            } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
                close_fd(&to_session);   /* end of input */
            }
        }
        if (idx_to >= 0 && p[idx_to].revents) {
            ssize_t w = write(to_session, inb + inoff, inlen);
            if (w > 0) {
                inoff += (size_t)w;
                inlen -= (size_t)w;
            } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
                close_fd(&to_session);   /* the service reads no more */
                inlen = 0;
            }
        }
        for (int k = 0; k < 2; k++) {
            if (idx_from[k] < 0 || !p[idx_from[k]].revents)
                continue;
            ssize_t got = read(from[k], outb, sizeof outb);
            if (got > 0) {
                if (to[k] >= 0 && write_blocking(to[k], outb, (size_t)got, deadline_ms) < 0) {
                    if (errno == ETIMEDOUT)
                        goto timeout;
                    if (errno == EINTR)
                        goto stopped;
                    if (k == 0)
                        goto gone;  /* nobody wants the output: the session ends */
                    to[k] = -1;     /* errors nobody reads are dropped */
                }
            } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
                close_fd(&from[k]);
            }
        }
    }
    int why = 0;        /* the loop ended: both outputs did */
    goto done;
timeout:
    why = ETIMEDOUT;
    goto done;
gone:
    why = EPIPE;
    goto done;
stopped:
    why = EINTR;
done:
    close_fd(&to_session);
    close_fd(&from[0]);
    close_fd(&from[1]);
    errno = why;
    return why ? -1 : 0;
}
