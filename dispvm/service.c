/* The DispVM service's loop: requests in, workers out, the pool kept. */
#include "service.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../orchestrator/qubes.h"
#include "../orchestrator/runtime.h"
#include "../orchestrator/util.h"
#include "../orchestrator/vmfw.h"
#include "proto.h"
#include "state.h"
#include "worker.h"

#define MAX_PENDING 32          /* connections that have not said what they want */
#define MAX_FILLS 8
#define MAX_POOLS 16
#define RETRY_MS 30000          /* after a preload failed, before the next one */
#define TICK_MS 1000
#define STOP_WAIT_MS 20000      /* for the workers to tear down at the end */
#define MAX_IDLE 4              /* request workers kept for the next requests */
#define IDLE_WORKER_MS 30000    /* how long one is kept */
#define HOLD_MS 1000            /* a replacement waits for running requests, at most */

enum wstate {
    W_REQUEST,                  /* making or serving a DispVM for a request */
    W_PRELOADING,               /* making a preload */
    W_PARKED,                   /* a preload, waiting */
    W_CLAIMED,                  /* a preload serving a request */
    W_GOING,                    /* tearing down */
    W_IDLE,                     /* a request's worker, its DispVM gone, for the next */
    W_HELD,                     /* a served preload's, its DispVM gone: it makes its pool's
                                   next preload once no request is being served */
};

struct fill {
    int fd, out;                /* the client's connection and stderr; fd -1: unused */
    char tpl[DVM_POOL_KEY_MAX];
    int pending, made, failed;
};

struct wrec {
    pid_t pid;                  /* 0: a free slot */
    int ctl;
    enum wstate state;
    char tpl[DVM_POOL_KEY_MAX];     /* a preload's pool (T or T@HOST); a request's T */
    char name[QUBES_NAME_MAX + 1];
    struct fill *fill;          /* the FILL this preload was made for */
    long idle_at;               /* W_IDLE or W_HELD since */
    bool recycle;               /* a served preload's: it may make the pool's next one */
};

struct pool {
    char tpl[DVM_POOL_KEY_MAX];     /* T, or T@HOST for one on another host; "": a free slot */
    long retry_at;
};

static struct {
    struct qubes_config cfg;
    int listener, sigfd;
    char sock[PATH_MAX];
    ino_t sock_ino;
    struct wrec w[DVM_MAX_WORKERS];
    int pending[MAX_PENDING];
    struct fill fills[MAX_FILLS];
    struct pool pools[MAX_POOLS];
    char default_tpl[QUBES_NAME_MAX + 1];
    int target;                 /* dispvm-preload */
    struct stat db;             /* qubes.xml when last read */
    long idle_since, next_tick;
    bool stop;
} S;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    qlogv("qubes-dvmd", fmt, ap);
    va_end(ap);
}

static void send_text(int fd, uint32_t type, const char *text)
{
    struct qerr e;
    const char *fields[] = { text };
    dvm_send(fd, type, fields, 1, NULL, 0, &e);
}

/* ---- the settings, from qubes.xml ---- */

static struct pool *pool_of(const char *tpl, bool add)
{
    struct pool *free_slot = NULL;
    if (!tpl[0])
        return NULL;
    for (int i = 0; i < MAX_POOLS; i++) {
        if (strcmp(S.pools[i].tpl, tpl) == 0)
            return &S.pools[i];
        if (!S.pools[i].tpl[0] && !free_slot)
            free_slot = &S.pools[i];
    }
    if (add && free_slot)
        snprintf(free_slot->tpl, sizeof free_slot->tpl, "%s", tpl);
    return add ? free_slot : NULL;
}

/* The default template and dispvm-preload, when qubes.xml changed. */
static bool read_settings(void)
{
    struct stat st;
    if (stat(S.cfg.db_path, &st) < 0 || qstat_same(&st, &S.db))
        return false;
    S.db = st;
    struct qubes q;
    struct qerr e;
    if (qubes_open(&q, true, &e) == 0 && qubes_load_for_reading(&q, &e) == 0) {
        int qid = q.coll->globals[QG_DEFAULT_TEMPLATE];
        const struct qvm *t = qid >= 0 ? qvm_collection_by_qid(q.coll, qid) : NULL;
        snprintf(S.default_tpl, sizeof S.default_tpl, "%s", t ? t->name : "");
        S.target = dispvm_preload_target(q.coll);
        /* The default template's pool, also when dispvm-preload was
         * raised while no pool was kept. */
        pool_of(S.default_tpl, S.target > 0);
    } else {
        say("cannot read the settings: %s", e.msg);
    }
    qubes_close(&q);
    return true;
}

/* ---- workers ---- */

static struct wrec *free_worker(void)
{
    for (int i = 0; i < DVM_MAX_WORKERS; i++)
        if (!S.w[i].pid)
            return &S.w[i];
    return NULL;
}

static int count(const char *tpl, enum wstate a, enum wstate b)
{
    int n = 0;
    for (int i = 0; i < DVM_MAX_WORKERS; i++)
        if (S.w[i].pid && (S.w[i].state == a || S.w[i].state == b) &&
            (!tpl || strcmp(S.w[i].tpl, tpl) == 0))
            n++;
    return n;
}

/* Whether a request is being served (its DispVM made, or run). */
static bool serving(void)
{
    return count(NULL, W_REQUEST, W_CLAIMED) > 0;
}

/* Workers of served preloads of `tpl` that may still make its next one. */
static int recycling(const char *tpl)
{
    int n = 0;
    for (int i = 0; i < DVM_MAX_WORKERS; i++)
        n += S.w[i].pid && S.w[i].recycle && strcmp(S.w[i].tpl, tpl) == 0;
    return n;
}

/* In a new worker: none of the service's descriptors but `keep` (and
 * 0-2), its signals as they were. */
static void become_worker(const int *keep, int nkeep)
{
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_UNBLOCK, &all, NULL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    signal(SIGCHLD, SIG_DFL);
    for (int fd = 3; fd < 1024; fd++) {
        bool kept = false;
        for (int i = 0; i < nkeep && !kept; i++)
            kept = keep[i] == fd;
        int next = 1024;    /* the next kept descriptor above fd */
        for (int i = 0; i < nkeep; i++)
            if (keep[i] > fd && keep[i] < next)
                next = keep[i];
        if (!kept) {
            close_range((unsigned)fd, (unsigned)next - 1, 0);
            fd = next - 1;
        }
    }
    close_range(1024, ~0U, 0);
}

/* A worker: the request `rq` of `client` (rq's descriptors: its stderr),
 * or a preload of `tpl` (client -1) with progress to `out`. */
static struct wrec *fork_worker(struct dvm_msg *rq, int client, const char *tpl, int out,
                                struct fill *fill)
{
    struct wrec *w = free_worker();
    int ctl[2];
    if (!w) {
        if (client >= 0)
            send_text(client, DVM_ERROR, "too many DispVMs at once (the DispVM service makes "
                      "at most 64)");
        return NULL;
    }
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ctl) < 0) {
        say("socketpair: %s", strerror(errno));
        return NULL;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        if (client >= 0) {
            int keep[] = { ctl[1], client, rq->nfds > 0 ? rq->fds[0] : -1 };
            become_worker(keep, 3);
            dispvm_worker_request(ctl[1], rq, client);
        }
        int keep[] = { ctl[1], out };
        become_worker(keep, 2);
        dispvm_worker_preload(ctl[1], tpl, out);
    }
    close(ctl[1]);
    if (pid < 0) {
        say("fork: %s", strerror(errno));
        close(ctl[0]);
        if (client >= 0)
            send_text(client, DVM_ERROR, "the DispVM service cannot start a worker");
        return NULL;
    }
    memset(w, 0, sizeof *w);
    w->pid = pid;
    w->ctl = ctl[0];
    w->state = client >= 0 ? W_REQUEST : W_PRELOADING;
    w->fill = fill;
    snprintf(w->tpl, sizeof w->tpl, "%s", tpl);
    return w;
}

/* The idle worker that waited least (its pages the warmest), NULL when
 * none waits. */
static struct wrec *idle_worker(void)
{
    struct wrec *best = NULL;
    for (int i = 0; i < DVM_MAX_WORKERS; i++)
        if (S.w[i].pid && S.w[i].state == W_IDLE && S.w[i].ctl >= 0 &&
            (!best || S.w[i].idle_at > best->idle_at))
            best = &S.w[i];
    return best;
}

static void request_worker(struct dvm_msg *rq, int client)
{
    const char *tpl = dvm_field(rq, DVM_RQ_TEMPLATE);
    struct wrec *w = idle_worker();
    struct qerr e;
    int fds[2] = { client, rq->nfds > 0 ? rq->fds[0] : -1 };
    if (w && fds[1] >= 0 && dvm_send(w->ctl, DVM_TAKE, rq->field, rq->nfields, fds, 2, &e) == 0) {
        w->state = W_REQUEST;
        snprintf(w->tpl, sizeof w->tpl, "%s", tpl[0] ? tpl : S.default_tpl);
        say("a request for %s: to a new DispVM (idle worker %d)", w->tpl[0] ? w->tpl :
            "the default template", (int)w->pid);
    } else if ((w = fork_worker(rq, client, tpl[0] ? tpl : S.default_tpl, -1, NULL))) {
        say("a request for %s: to a new DispVM (worker %d)", w->tpl[0] ? w->tpl : "the default "
            "template", (int)w->pid);
    }
    close(client);
    dvm_msg_close_fds(rq);
}

/* Preloads of `tpl` up to the target; none while the last one failed
 * recently. `reuse`: a served preload's worker whose DispVM is gone: it
 * makes the first one (no fork, its hypervisor connection kept), or ends
 * when none is needed. Progress to the FILL's stderr when it asked. */
static void replenish(const char *tpl, struct fill *fill, struct wrec *reuse)
{
    struct qerr e;
    struct pool *p = pool_of(tpl, S.target > 0);
    int have = count(tpl, W_PRELOADING, W_PARKED) + recycling(tpl);
    int want = p && (fill || qnow_ms() >= p->retry_at) ? S.target : 0;
    const char *pool[] = { tpl };
    if (reuse && have < want && !S.stop &&
        dvm_send(reuse->ctl, DVM_PRELOAD, pool, 1, NULL, 0, &e) == 0) {
        reuse->state = W_PRELOADING;
        reuse->name[0] = '\0';
        say("preloading a DispVM of %s (worker %d, again)", tpl, (int)reuse->pid);
        have++;
    } else if (reuse) {
        kill(reuse->pid, SIGTERM);
    }
    for (; have < want; have++) {
        int out = fill ? fcntl(fill->out, F_DUPFD_CLOEXEC, 3) : -1;
        struct wrec *w = fork_worker(NULL, -1, tpl, out, fill);
        if (out >= 0)
            close(out);
        if (!w)
            return;
        if (fill)
            fill->pending++;
        say("preloading a DispVM of %s (worker %d)", tpl, (int)w->pid);
    }
}

static void fill_done_check(struct fill *f)
{
    if (!f || f->fd < 0 || f->pending > 0)
        return;
    char text[128];
    snprintf(text, sizeof text, "%d preloaded, %d failed", f->made, f->failed);
    send_text(f->fd, f->failed && !f->made ? DVM_ERROR : DVM_FILLED, text);
    close(f->fd);
    close(f->out);
    f->fd = f->out = -1;
}

/* Preloads of every pool as dispvm-preload says: extra parked ones go,
 * missing ones come while no request is being served. */
static void keep_pools(void)
{
    bool busy = serving();
    for (int i = 0; i < MAX_POOLS; i++) {
        const char *tpl = S.pools[i].tpl;
        if (!tpl[0])
            continue;
        int extra = count(tpl, W_PRELOADING, W_PARKED) - S.target;
        for (int k = 0; k < DVM_MAX_WORKERS && extra > 0; k++)
            if (S.w[k].pid && S.w[k].state == W_PARKED && strcmp(S.w[k].tpl, tpl) == 0) {
                say("%s: dispvm-preload is %d: this preload goes", S.w[k].name, S.target);
                kill(S.w[k].pid, SIGTERM);
                S.w[k].state = W_GOING;
                extra--;
            }
        if (extra < 0 && !busy)
            replenish(tpl, NULL, NULL);
    }
}

static void reap(void)
{
    int st;
    pid_t pid;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        for (int i = 0; i < DVM_MAX_WORKERS; i++) {
            struct wrec *w = &S.w[i];
            if (w->pid != pid)
                continue;
            if (w->state == W_PRELOADING) {     /* it never parked */
                struct pool *p = pool_of(w->tpl, false);
                if (p)
                    p->retry_at = qnow_ms() + RETRY_MS;
                say("a preload of %s failed (worker %d; see above)", w->tpl, (int)pid);
                if (w->fill) {
                    w->fill->pending--;
                    w->fill->failed++;
                    fill_done_check(w->fill);
                }
            }
            close(w->ctl);
            /* A served preload's worker that ended without making the next
             * one (its teardown failed, a signal): a new worker makes it. */
            bool replace = w->recycle;
            char tpl[DVM_POOL_KEY_MAX];
            snprintf(tpl, sizeof tpl, "%s", w->tpl);
            memset(w, 0, sizeof *w);
            if (replace && !S.stop)
                replenish(tpl, NULL, NULL);
        }
    }
}

/* A message from a worker (or its hang-up). */
static void from_worker(struct wrec *w)
{
    struct dvm_msg m;
    struct qerr e;
    int rc = dvm_recv(w->ctl, &m, 0, &e);
    if (rc != 0) {
        if (w->state != W_PRELOADING)
            w->state = W_GOING;
        return;
    }
    switch (m.type) {
    case DVM_PARKED:
        w->state = W_PARKED;
        snprintf(w->name, sizeof w->name, "%s", dvm_field(&m, 1));
        say("%s is preloaded and waits (worker %d)", w->name, (int)w->pid);
        /* dispvm-preload went down while it was being made. */
        if (count(w->tpl, W_PRELOADING, W_PARKED) > S.target) {
            say("%s: dispvm-preload is %d: this preload goes", w->name, S.target);
            kill(w->pid, SIGTERM);
            w->state = W_GOING;
        }
        if (w->fill) {
            w->fill->pending--;
            w->fill->made++;
            fill_done_check(w->fill);
            w->fill = NULL;
        }
        break;
    case DVM_DECLINE:           /* it stays parked; the request gets a worker */
    case DVM_BROKEN:
        w->state = m.type == DVM_DECLINE ? W_PARKED : W_GOING;
        if (m.nfds == 2) {
            int client = m.fds[0];
            m.fds[0] = m.fds[1];
            m.nfds = 1;
            request_worker(&m, client);
        }
        break;
    case DVM_SERVED:            /* its output is complete: a replacement may come */
        w->state = W_GOING;
        /* One here: made by this worker once its DispVM is gone (no fork,
         * its hypervisor connection kept); one on another host: now. */
        w->recycle = !strchr(w->tpl, '@');
        if (!w->recycle)
            replenish(w->tpl, NULL, NULL);
        break;
    case DVM_IDLE:              /* its DispVM is gone: kept for a while, a few at most */
        if (w->recycle) {
            /* Still its pool's (recycling() counts it): release_held, at
             * the end of this turn of the loop, has it make the pool's
             * next preload once no request competes with that. */
            w->state = W_HELD;
            w->idle_at = qnow_ms();
            if (serving() && !S.stop)
                say("the next preload of %s waits while requests are served (worker %d)",
                    w->tpl, (int)w->pid);
            break;
        }
        if (w->state == W_REQUEST && !S.stop && count(NULL, W_IDLE, W_IDLE) < MAX_IDLE) {
            w->state = W_IDLE;
            w->idle_at = qnow_ms();
        } else {
            kill(w->pid, SIGTERM);
            w->state = W_GOING;
        }
        break;
    default:
        say("worker %d sent message type %u", (int)w->pid, m.type);
    }
    dvm_msg_close_fds(&m);
}

/* ---- requests ---- */

/* A parked preload of the pool `key`, or (key NULL) of T on any other
 * host. */
static struct wrec *parked(const char *key, const char *tpl)
{
    size_t tl = tpl ? strlen(tpl) : 0;
    for (int i = 0; i < DVM_MAX_WORKERS; i++) {
        struct wrec *w = &S.w[i];
        if (w->pid && w->state == W_PARKED &&
            (key ? strcmp(w->tpl, key) == 0 : strncmp(w->tpl, tpl, tl) == 0 && w->tpl[tl] == '@'))
            return w;
    }
    return NULL;
}

static void request(int client, struct dvm_msg *m)
{
    const char *tpl = dvm_field(m, DVM_RQ_TEMPLATE), *host = dvm_field(m, DVM_RQ_HOST);
    if (!tpl[0])
        tpl = S.default_tpl;
    /* The pool of the host asked for (this one's is T's); with none asked,
     * a preload here first, else one on any host. */
    char key[DVM_POOL_KEY_MAX];
    dvm_pool_key(key, tpl, host);
    pool_of(key, S.target > 0);
    struct wrec *w = parked(key, NULL);
    if (!w && !host[0])
        w = parked(NULL, tpl);
    struct qerr e;
    int fds[2] = { client, m->nfds > 0 ? m->fds[0] : -1 };
    if (w && fds[1] >= 0 && dvm_send(w->ctl, DVM_CLAIM, m->field, m->nfields, fds, 2, &e) == 0) {
        w->state = W_CLAIMED;
        say("a request for %s: to preloaded %s (%s)", tpl, w->name, w->tpl);
        close(client);
        dvm_msg_close_fds(m);
        return;
    }
    request_worker(m, client);
}

static void fill(int client, struct dvm_msg *m)
{
    struct fill *f = NULL;
    for (int i = 0; i < MAX_FILLS && !f; i++)
        if (S.fills[i].fd < 0)
            f = &S.fills[i];
    if (!f || m->nfds < 1) {
        send_text(client, DVM_ERROR, f ? "FILL without its stderr" : "too many FILLs at once");
        close(client);
        dvm_msg_close_fds(m);
        return;
    }
    const char *tpl = dvm_field(m, 0);
    /* The preloads of the set that was replaced go. */
    for (int i = 0; i < DVM_MAX_WORKERS; i++)
        if (S.w[i].pid && strcmp(S.w[i].tpl, tpl) == 0 &&
            (S.w[i].state == W_PARKED || S.w[i].state == W_PRELOADING)) {
            kill(S.w[i].pid, SIGTERM);
            S.w[i].state = W_GOING;
        }
    S.db.st_ino = 0;
    read_settings();
    memset(f, 0, sizeof *f);
    f->fd = client;
    f->out = m->fds[0];
    m->nfds = 0;
    snprintf(f->tpl, sizeof f->tpl, "%s", tpl);
    replenish(tpl, f, NULL);
    fill_done_check(f);
}

static void from_pending(int *slot)
{
    struct dvm_msg m;
    struct qerr e;
    int fd = *slot;
    *slot = -1;
    if (dvm_recv(fd, &m, 0, &e) != 0) {
        close(fd);
        return;
    }
    if (m.type == DVM_REQUEST && m.nfields >= DVM_RQ_NFIELDS)
        request(fd, &m);
    else if (m.type == DVM_FILL && m.nfields >= 1)
        fill(fd, &m);
    else {
        send_text(fd, DVM_ERROR, "not a request the DispVM service takes");
        dvm_msg_close_fds(&m);
        close(fd);
    }
}

static void accept_client(void)
{
    int fd = accept4(S.listener, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        return;
    struct ucred cred;
    socklen_t cl = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0 ||
        (cred.uid != 0 && cred.uid != geteuid())) {
        say("refused a caller of uid %d: only root asks for DispVMs", (int)cred.uid);
        close(fd);
        return;
    }
    for (int i = 0; i < MAX_PENDING; i++)
        if (S.pending[i] < 0) {
            S.pending[i] = fd;
            return;
        }
    send_text(fd, DVM_ERROR, "the DispVM service is too busy");
    close(fd);
}

/* ---- the loop ---- */

static void tick(void)
{
    long now = qnow_ms();
    if (now < S.next_tick)
        return;
    S.next_tick = now + TICK_MS;
    /* Every tick, not only when qubes.xml changed: a service that just
     * started fills its pools, one whose preload failed tries again. */
    read_settings();
    keep_pools();
    for (int i = 0; i < DVM_MAX_WORKERS; i++)
        if (S.w[i].pid && S.w[i].state == W_IDLE && now - S.w[i].idle_at > IDLE_WORKER_MS) {
            kill(S.w[i].pid, SIGTERM);
            S.w[i].state = W_GOING;
        }
    bool idle = count(NULL, W_REQUEST, W_PRELOADING) + count(NULL, W_PARKED, W_CLAIMED) +
                    count(NULL, W_GOING, W_GOING) == 0;
    for (int i = 0; i < MAX_FILLS; i++)
        idle = idle && S.fills[i].fd < 0;
    for (int i = 0; i < MAX_PENDING; i++)
        idle = idle && S.pending[i] < 0;
    if (!idle)
        S.idle_since = 0;
    else if (!S.idle_since)
        S.idle_since = now;
    else if (now - S.idle_since > DVM_IDLE_S * 1000L) {
        say("idle for %d s: ending", DVM_IDLE_S);
        S.stop = true;
    }
}

static void signals(void)
{
    struct signalfd_siginfo si;
    while (read(S.sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (si.ssi_signo == SIGCHLD)
            reap();
        else
            S.stop = true;
    }
}

/* The replacements held while requests were served: made once none is,
 * or once one has waited HOLD_MS (a steady stream of requests still gets
 * its pool refilled). */
static void release_held(void)
{
    bool busy = serving();
    long now = qnow_ms();
    for (int i = 0; i < DVM_MAX_WORKERS; i++) {
        struct wrec *w = &S.w[i];
        if (!w->pid || w->state != W_HELD || (busy && now - w->idle_at < HOLD_MS && !S.stop))
            continue;
        w->recycle = false;
        w->state = W_GOING;
        replenish(w->tpl, NULL, w);
    }
}

/* How long the loop may wait: until the next tick, or a held
 * replacement's HOLD_MS. */
static int loop_wait(void)
{
    long now = qnow_ms(), wait = S.next_tick - now;
    for (int i = 0; i < DVM_MAX_WORKERS; i++)
        if (S.w[i].pid && S.w[i].state == W_HELD && S.w[i].idle_at + HOLD_MS - now < wait)
            wait = S.w[i].idle_at + HOLD_MS - now;
    return wait < 0 ? 0 : wait > TICK_MS ? TICK_MS : (int)wait;
}

static void loop(void)
{
    struct pollfd p[2 + DVM_MAX_WORKERS + MAX_PENDING];
    struct wrec *who[DVM_MAX_WORKERS];
    int *pend[MAX_PENDING];
    while (!S.stop) {
        int n = 0, nw = 0, np = 0;
        p[n++] = (struct pollfd){ S.sigfd, POLLIN, 0 };
        p[n++] = (struct pollfd){ S.listener, POLLIN, 0 };
        for (int i = 0; i < DVM_MAX_WORKERS; i++)
            if (S.w[i].pid && S.w[i].ctl >= 0) {
                who[nw++] = &S.w[i];
                p[n++] = (struct pollfd){ S.w[i].ctl, POLLIN, 0 };
            }
        for (int i = 0; i < MAX_PENDING; i++)
            if (S.pending[i] >= 0) {
                pend[np++] = &S.pending[i];
                p[n++] = (struct pollfd){ S.pending[i], POLLIN, 0 };
            }
        int r = poll(p, (nfds_t)n, loop_wait());
        if (r < 0 && errno != EINTR) {
            say("poll: %s", strerror(errno));
            return;
        }
        if (r > 0) {
            if (p[0].revents)
                signals();
            if (p[1].revents)
                accept_client();
            for (int i = 0; i < nw; i++)
                if (p[2 + i].revents && who[i]->pid) {
                    if (p[2 + i].revents & POLLIN)
                        from_worker(who[i]);
                    else {          /* hung up: the worker is ending */
                        close(who[i]->ctl);
                        who[i]->ctl = -1;
                    }
                }
            for (int i = 0; i < np; i++)
                if (p[2 + nw + i].revents)
                    from_pending(pend[i]);
        }
        tick();
        release_held();
    }
}

/* The end: every worker tears its DispVM down. */
static void stop_workers(void)
{
    for (int i = 0; i < DVM_MAX_WORKERS; i++)
        if (S.w[i].pid) {
            kill(S.w[i].pid, SIGTERM);
            if (S.w[i].state == W_IDLE || S.w[i].state == W_HELD)
                S.w[i].state = W_GOING;
        }
    for (long end = qnow_ms() + STOP_WAIT_MS;;) {
        reap();
        if (count(NULL, W_REQUEST, W_PRELOADING) + count(NULL, W_PARKED, W_CLAIMED) +
                count(NULL, W_GOING, W_GOING) == 0 || qnow_ms() > end)
            break;
        struct pollfd p = { S.sigfd, POLLIN, 0 };
        poll(&p, 1, 100);
        struct signalfd_siginfo si;
        while (read(S.sigfd, &si, sizeof si) == (ssize_t)sizeof si)
            ;
    }
}

/* ---- start and stop ---- */

static int listen_on(struct qerr *err)
{
    char tmp[PATH_MAX + 8];
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    if (qrt_path(&S.cfg, QRT_DVMD_SOCK, S.sock, sizeof S.sock, err) < 0)
        return -1;
    snprintf(tmp, sizeof tmp, "%s.new", S.sock);
    if (strlen(tmp) >= sizeof addr.sun_path)
        return qerr_set(err, "socket path %s is too long", tmp);
    strcpy(addr.sun_path, tmp);
    unlink(tmp);
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    mode_t old = umask(077);
    int rc = fd < 0 ? -1 : bind(fd, (struct sockaddr *)&addr, sizeof addr);
    umask(old);
    struct stat st;
    if (rc < 0 || listen(fd, 64) < 0 || stat(tmp, &st) < 0 || rename(tmp, S.sock) < 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return qerr_errno(err, e, "cannot listen on %s", S.sock);
    }
    S.listener = fd;
    S.sock_ino = st.st_ino;
    return 0;
}

static int take_lock(int *fd, struct qerr *err)
{
    char path[PATH_MAX];
    if (qrt_path(&S.cfg, QRT_DVMD_LOCK, path, sizeof path, err) < 0 || qmkdirs(S.cfg.run_dir, err) < 0)
        return -1;
    *fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (*fd < 0)
        return qerr_errno(err, errno, "cannot open %s", path);
    if (flock(*fd, LOCK_EX | LOCK_NB) < 0) {
        if (errno == EWOULDBLOCK)
            return 1;
        return qerr_errno(err, errno, "cannot lock %s", path);
    }
    return 0;
}

/* The libraries every worker needs, loaded here once: the hypervisor's
 * (no connection: each worker makes its own) and the firewall's; and QEMU's
 * user and groups, which every worker's files are given (a lookup through
 * the name service costs a worker more than a millisecond). */
static void load_libraries(void)
{
    struct vmm v;
    struct qerr e;
    uid_t u;
    gid_t g;
    qemulator_ids(&u, &g);
    vmm_init(&v, &S.cfg);
    if (!S.cfg.offline && vmm_load(&v, &e) < 0)
        say("%s (each DispVM will try again)", e.msg);
    if (vmfw_preload(&e) < 0)
        say("%s", e.msg);
}

static int detach(int *ready, struct qerr *err)
{
    char log[PATH_MAX];
    int p[2];
    if (qrt_path(&S.cfg, QRT_DVMD_LOG, log, sizeof log, err) < 0 || pipe2(p, O_CLOEXEC) < 0)
        return -1;
    int lfd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (lfd < 0 || null < 0)
        return qerr_errno(err, errno, "cannot open %s", log);
    pid_t pid = fork();
    if (pid < 0)
        return qerr_errno(err, errno, "fork");
    if (pid > 0) {          /* the caller's: returns once the service listens */
        char b;
        close(p[1]);
        ssize_t n = read(p[0], &b, 1);
        _exit(n == 1 ? 0 : 1);
    }
    close(p[0]);
    setsid();
    dup2(null, 0);
    dup2(lfd, 1);
    dup2(lfd, 2);
    close(null);
    close(lfd);
    *ready = p[1];
    return 0;
}

int dispvm_service_main(bool foreground, struct qerr *err)
{
    /* Nothing of the caller's stays open here: a pipe it inherited would
     * never see its end while the service runs. */
    close_range(3, ~0U, 0);
    if (chdir("/") < 0)
        return qerr_errno(err, errno, "chdir /");
    memset(&S, 0, sizeof S);
    S.listener = S.sigfd = -1;
    for (int i = 0; i < MAX_PENDING; i++)
        S.pending[i] = -1;
    for (int i = 0; i < MAX_FILLS; i++)
        S.fills[i].fd = S.fills[i].out = -1;
    int lock = -1, ready = -1;
    if (qubes_config_init(&S.cfg, err) < 0)
        return -1;
    if (S.cfg.offline)
        return qerr_set(err, "the DispVM service does not run in offline mode");
    int rc = take_lock(&lock, err);
    if (rc != 0)
        return rc;
    if (listen_on(err) < 0 || (!foreground && detach(&ready, err) < 0))
        return -1;
    char pid[24];
    int n = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
    if (ftruncate(lock, 0) == 0)
        (void)!pwrite(lock, pid, (size_t)n, 0);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    S.sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (S.sigfd < 0)
        return qerr_errno(err, errno, "signalfd");
    load_libraries();
    read_settings();
    say("listening on %s (default template %s, dispvm-preload %d)", S.sock,
        S.default_tpl[0] ? S.default_tpl : "none", S.target);
    if (ready >= 0) {
        (void)!write(ready, "", 1);
        close(ready);
    }
    S.next_tick = qnow_ms();
    loop();
    say("stopping: %d DispVM(s) go", count(NULL, W_REQUEST, W_PRELOADING) +
                                         count(NULL, W_PARKED, W_CLAIMED));
    struct stat st;
    if (stat(S.sock, &st) == 0 && st.st_ino == S.sock_ino)
        unlink(S.sock);
    close(S.listener);
    stop_workers();
    close(lock);
    return 0;
}

int dispvm_service_stop(const struct qubes_config *cfg, struct qerr *err)
{
    char path[PATH_MAX], text[32] = "";
    if (qrt_path(cfg, QRT_DVMD_LOCK, path, sizeof path, err) < 0)
        return -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return errno == ENOENT ? 0 : qerr_errno(err, errno, "cannot open %s", path);
    if (flock(fd, LOCK_SH | LOCK_NB) == 0) {        /* nobody holds it */
        close(fd);
        return 0;
    }
    (void)!pread(fd, text, sizeof text - 1, 0);
    int pid = atoi(text);
    if (pid > 1)
        kill(pid, SIGTERM);
    for (long end = qnow_ms() + STOP_WAIT_MS + 5000; flock(fd, LOCK_SH | LOCK_NB) < 0;) {
        if (qnow_ms() > end) {
            close(fd);
            return qerr_set(err, "the DispVM service (pid %d) did not stop", pid);
        }
        usleep(20000);
    }
    close(fd);
    return 0;
}
