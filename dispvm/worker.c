/* A worker's chain, in the order it happens: the request's settings, the
 * savefile set, the DispVM restored, its identity, (a preload: warmed up,
 * parked, claimed), READY, the wait for the end, the teardown. */
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../orchestrator/agent_client.h"
#include "../orchestrator/hosts.h"
#include "../orchestrator/runtime.h"
#include "../orchestrator/timing.h"
#include "../orchestrator/util.h"
#include "place.h"
#include "prepare.h"
#include "preload.h"
#include "restore.h"
#include "teardown.h"

static volatile sig_atomic_t stopping;

static void on_stop(int sig)
{
    stopping = sig;
}

struct worker {
    int ctl;                    /* the line to the service */
    bool opened;                /* q is open (a worker that served before) */
    int client;                 /* the request's client, -1 while none */
    FILE *progress;             /* where progress lines go, or NULL */
    bool wait_teardown;         /* the client waits for GONE */
    bool preload;
    char placed[PATH_MAX];      /* its placement's record (dispvm/place.h) */
    struct qubes q;
    struct dispvm_template t;
    struct dispvm_state d;
};

/* The settings a request brings, and the service's own values of them
 * (a preload's, again once its request is served). */
static const char *const request_vars[] = { "QUBES_DISPVM_MIN_FREE_MIB", "QUBES_DISPVM_FEED" };
#define NVARS (sizeof request_vars / sizeof *request_vars)
static char *own_vars[NVARS];

static void own_settings(bool save)
{
    for (size_t i = 0; i < NVARS; i++) {
        if (save) {
            const char *v = getenv(request_vars[i]);
            own_vars[i] = v ? strdup(v) : NULL;
        } else if (own_vars[i]) {
            setenv(request_vars[i], own_vars[i], 1);
        } else {
            unsetenv(request_vars[i]);
        }
    }
}

static void setup(struct worker *w, int ctl, bool preload)
{
    memset(w, 0, sizeof *w);
    w->ctl = ctl;
    w->client = -1;
    w->preload = preload;
    w->d.dispid = -1;
    /* The service's end is the DispVM's: nothing is left running for a
     * service that is gone. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    struct sigaction sa = { .sa_handler = on_stop };
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGCHLD, SIG_DFL);
    if (getppid() == 1)
        stopping = SIGTERM;     /* the service went before the signal was asked for */
    own_settings(true);
    qtime_start(-1, "worker");
}

/* The request's own settings: where progress and timings go, and the
 * client's environment for the restore. */
static void take_settings(struct worker *w, const struct dvm_msg *rq, int out)
{
    const char *flags = dvm_field(rq, DVM_RQ_FLAGS);
    /* Off unless this request asks: a worker may have served another. */
    qtime_start(strchr(flags, 't') && out >= 0 ? out : -1,
                w->preload ? "worker (preload)" : "worker");
    if (w->progress && w->progress != stderr)
        fclose(w->progress);
    w->progress = NULL;
    int fd = strchr(flags, 'p') && out >= 0 ? fcntl(out, F_DUPFD_CLOEXEC, 3) : -1;
    if (fd >= 0 && !(w->progress = fdopen(fd, "w")))
        close(fd);
    if (w->progress)
        setvbuf(w->progress, NULL, _IOLBF, 0);
    w->wait_teardown = strchr(flags, 'w') != NULL;
    const char *values[NVARS] = { dvm_field(rq, DVM_RQ_MIN_FREE), dvm_field(rq, DVM_RQ_FEED) };
    for (size_t i = 0; i < NVARS; i++) {
        if (values[i][0])
            setenv(request_vars[i], values[i], 1);
        else
            unsetenv(request_vars[i]);
    }
}

static void tell_client(struct worker *w, uint32_t type, const char *text)
{
    struct qerr e;
    const char *fields[] = { text };
    if (w->client >= 0)
        dvm_send(w->client, type, fields, 1, NULL, 0, &e);
}

static void tell_service(struct worker *w, uint32_t type, const char *const fields[], int n,
                         const int *fds, int nfds)
{
    struct qerr e;
    if (dvm_send(w->ctl, type, fields, n, fds, nfds, &e) < 0)
        fprintf(stderr, "qubes-dvmd worker %d: %s\n", (int)getpid(), e.msg);
}

/* ---- the savefile set ---- */

/* The set's lock, shared, with the set usable under it: a stale set is
 * made again first when `regenerate` (one preparation at a time, under the
 * qfile-daemon-dvm lock, checked again there), else refused. */
static int usable_set(struct worker *w, bool regenerate, int *set_lock, struct qerr *err)
{
    for (int round = 0;; round++) {
        bool usable;
        char why[512];
        if ((*set_lock = dvmdata_lock(&w->t.set, false, err)) < 0 ||
            dispvm_set_usable(&w->q, &w->t, &usable, why, sizeof why, err) < 0)
            return -1;
        if (usable)
            return 0;
        qclose(set_lock);
        if (!regenerate || round > 0)
            return qerr_set(err, "the DispVM savefile cannot be used: %s (run "
                            "qvm-create-default-dvm %s%s%s%s)", why, w->t.host[0] ? "--host " : "",
                            w->t.host, w->t.host[0] ? " " : "", w->t.name);
        cleanup_close int lock = qrt_lock(&w->q.cfg, QRT_DISPVM_LOCK, err);
        char name[QUBES_NAME_MAX + 1], host[QUBES_NAME_MAX + 1];
        snprintf(name, sizeof name, "%s", w->t.name);
        snprintf(host, sizeof host, "%s", w->t.host);
        if (lock < 0 || qubes_load_for_reading(&w->q, err) < 0 ||
            dispvm_template_find_on(&w->q, name, host, &w->t, err) < 0 ||
            dispvm_set_usable(&w->q, &w->t, &usable, why, sizeof why, err) < 0)
            return -1;
        if (!usable) {
            qsay(w->progress, "--> Savefile unusable (%s): making it again", why);
            if (dispvm_set_make(&w->q, &w->t, w->progress, err) < 0 ||
                qubes_load_for_reading(&w->q, err) < 0 ||
                dispvm_template_find_on(&w->q, name, host, &w->t, err) < 0)
                return -1;
        }
    }
}

/* ---- the DispVM ---- */

/* The guest learns who it is now (name, MAC, address, a random seed of
 * its own) before anything else runs in it. */
static int give_identity(struct worker *w, struct qerr *err)
{
    const struct dispvm_state *d = &w->d;
    struct agent_conn c;
    char ip[24];
    snprintf(ip, sizeof ip, "%s/%d", d->net.ip, d->net.prefix);
    /* dispvm_restore returned once its qrexec-daemon said the agent
     * answered, its socket listening: no wait is left, only a daemon that
     * ended since. */
    if (agent_connect(d->qrexec_sock, 0, &c, err) < 0)
        return qerr_prefix(err, "%s: its qrexec daemon ended after its agent answered", d->name);
    int rc = agent_identity(&c, d->name, d->net.on ? d->net.mac : "", d->net.on ? ip : "",
                            d->net.gateway, err);
    agent_close(&c);
    qtime_mark("identity given");
    return rc;
}

static int make(struct worker *w, const char *template_name, const char *source,
                const char *label, const char *host, bool regenerate, struct qerr *err)
{
    char placed[QUBES_NAME_MAX + 1];
    const char *tname = template_name[0] ? template_name : NULL;
    if (!w->opened && qubes_open(&w->q, false, err) < 0)
        return -1;
    w->opened = true;
    if (qubes_load_for_reading(&w->q, err) < 0)
        return -1;
    /* A host named, or the one placement picks among those with a set. */
    if (!host[0] && (dispvm_place(&w->q, tname, placed, sizeof placed, w->placed,
                                  sizeof w->placed, w->progress, err) < 0))
        return -1;
    if (dispvm_template_find_on(&w->q, tname, host[0] ? host : placed, &w->t, err) < 0)
        return -1;
    if (strcmp(source, "dom0") != 0 && !qvm_collection_by_name(w->q.coll, source))
        return qerr_set(err, "source VM '%s' does not exist", source);
    qtime_mark("qubes.xml read");
    cleanup_close int set_lock = -1;
    if (usable_set(w, regenerate, &set_lock, err) < 0)
        return -1;
    qtime_mark("savefile set locked, usable");
    struct vmm *vmm = dispvm_template_vmm(&w->q, &w->t, err);
    if (!vmm || dispvm_enough_memory(vmm, err) < 0)
        return -1;
    qtime_mark("host memory (hypervisor connected)");
    dispvm_state_init(&w->d, &w->t, w->q.coll, source, label[0] ? label : NULL, w->preload,
                      w->progress);
    if (dispvm_restore(&w->q, &w->d, &set_lock, err) < 0)
        return -1;
    return give_identity(w, err);
}

/* A preload rehearses a request before it waits: the usual service, fed a
 * line that starts a program. The guest's paths a request takes (the
 * service's shell forking and running a program, input and output through
 * the agent), and the emulator's code for them, are then warm for the
 * request that claims it: its first program starts about 10 ms sooner
 * under TCG. The output goes nowhere. Best effort. */
static void warm_up(struct worker *w)
{
    static const char script[] = "date\n";
    struct agent_conn c;
    struct qerr e;
    int st, in[2];
    int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (null < 0)
        return;
    if (pipe2(in, O_CLOEXEC) < 0) {
        close(null);
        return;
    }
    /* A few bytes: the pipe takes them all before anything reads. */
    (void)!write(in[1], script, sizeof script - 1);
    close(in[1]);
    if (agent_connect(w->d.qrexec_sock, DISPVM_AGENT_WAIT_MS, &c, &e) == 0) {
        agent_deadline(&c, AGENT_REQUEST_MS);
        if (agent_service(&c, "user", "qubes.VMShell", "dom0", in[0], null, null, &st, &e) < 0)
            qsay(w->progress, "warning: %s: warming up: %s", w->d.name, e.msg);
        agent_close(&c);
    }
    close(in[0]);
    close(null);
}

/* Waits until `fd` is readable (or hung up), the service's line too when
 * `ctl`; returns the readable one, or -1 once a stop signal came. */
static int wait_for(int fd, int ctl)
{
    struct pollfd p[2] = { { fd, POLLIN, 0 }, { ctl, POLLIN, 0 } };
    for (;;) {
        if (stopping)
            return -1;
        int r = poll(p, ctl >= 0 ? 2 : 1, -1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (p[0].revents)
            return fd;
        if (ctl >= 0 && p[1].revents)
            return ctl;
    }
}

/* READY, then the wait for the client's DONE (or its hang-up, or a stop
 * signal, or the service's end). */
static void serve(struct worker *w)
{
    tell_client(w, DVM_READY, w->d.name);
    qtime_mark("READY sent");
    for (;;) {
        int fd = wait_for(w->client, w->ctl);
        if (fd == w->client || fd < 0) {
            struct dvm_msg m;
            struct qerr e;
            if (fd >= 0 && dvm_recv(w->client, &m, 0, &e) == 0) {
                dvm_msg_close_fds(&m);
                if (m.type != DVM_DONE)
                    continue;
            }
            return;
        }
        char b;     /* the service's line: it only ever hangs up now */
        if (recv(w->ctl, &b, 1, MSG_DONTWAIT) == 0)
            return;
    }
}

/* The DispVM's end: its teardown, its placement released, GONE when
 * asked. With `stay`, a worker whose DispVM went here and cleanly (a
 * host's connection may be the next one's trouble) says IDLE once the
 * domain is gone, before its record goes: whoever sees the record gone
 * and asks again finds it idle. True when it did. */
static bool end_dispvm(struct worker *w, bool stay)
{
    struct qerr e;
    struct qtime_step s;
    qtime_begin(&s);
    int rc = dispvm_teardown_domain(&w->q, &w->d, &e);
    if (rc < 0)
        fprintf(stderr, "qubes-dvmd worker %d: %s: %s\n", (int)getpid(), w->d.name, e.msg);
    stay = stay && rc == 0 && !stopping && !w->d.host[0];
    if (stay)
        tell_service(w, DVM_IDLE, NULL, 0, NULL, 0);
    if (dispvm_teardown_record(&w->q, &w->d, &e) < 0)
        fprintf(stderr, "qubes-dvmd worker %d: %s: %s\n", (int)getpid(), w->d.name, e.msg);
    dispvm_place_release(w->placed);
    w->placed[0] = '\0';
    qtime_end(&s, "teardown");
    if (w->wait_teardown)
        tell_client(w, DVM_GONE, "");
    if (w->progress)
        fflush(w->progress);
    return stay;
}

static void __attribute__((noreturn)) leave(struct worker *w, int status)
{
    if (w->opened)
        qubes_close(&w->q);
    /* A forked copy of the service: its exit handlers and buffers are the
     * service's, not ours to run. */
    _exit(status);
}

static void __attribute__((noreturn)) finish(struct worker *w, int status)
{
    end_dispvm(w, false);
    leave(w, status);
}

/* The qrexec-daemons of a worker's earlier DispVMs are its children:
 * those that ended (a daemon ends once its domain is gone, often just
 * after the worker looked). */
static void reap_daemons(void)
{
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
}

/* A worker whose DispVM went and left nothing stays for the next one: no
 * fork, no new hypervisor connection. A request's waits for the service's
 * TAKE, a served preload's for PRELOAD (1: the message is in *m, its
 * descriptors the caller's), or the service's end (0: the caller exits).
 * Nothing of the last request stays: its client, progress, timings, and
 * (a preload's) its settings. */
static int next_job(struct worker *w, struct dvm_msg *m)
{
    bool again = end_dispvm(w, true);
    if (w->client >= 0)
        close(w->client);
    w->client = -1;
    if (w->progress && w->progress != stderr)
        fclose(w->progress);
    w->progress = NULL;
    qtime_start(-1, w->preload ? "worker (preload)" : "worker");
    w->wait_teardown = false;
    if (!again)
        return 0;
    if (w->preload)
        own_settings(false);
    reap_daemons();
    memset(&w->t, 0, sizeof w->t);
    memset(&w->d, 0, sizeof w->d);
    w->d.dispid = -1;
    struct qerr e;
    for (;;) {
        if (wait_for(w->ctl, -1) < 0 || dvm_recv(w->ctl, m, 0, &e) != 0)
            return 0;
        if (!w->preload && m->type == DVM_TAKE && m->nfds == 2 &&
            m->nfields >= DVM_RQ_NFIELDS)
            return 1;
        if (w->preload && m->type == DVM_PRELOAD && m->nfields >= 1 &&
            strlen(dvm_field(m, 0)) < DVM_POOL_KEY_MAX)
            return 1;
        dvm_msg_close_fds(m);
    }
}

static void __attribute__((noreturn)) fail(struct worker *w, const struct qerr *err)
{
    if (w->client >= 0) {
        tell_client(w, DVM_ERROR, err->msg);
    } else {
        fprintf(stderr, "qubes-dvmd worker %d: %s\n", (int)getpid(), err->msg);
        qsay(w->progress, "error: %s", err->msg);
    }
    finish(w, 1);
}

void dispvm_worker_request(int ctl, struct dvm_msg *rq, int client)
{
    struct worker w;
    struct qerr err;
    static struct dvm_msg next;
    setup(&w, ctl, false);
    int out = rq->nfds > 0 ? rq->fds[0] : -1;
    for (;;) {
        w.client = client;
        take_settings(&w, rq, out);
        dvm_msg_close_fds(rq);
        qtime_mark(rq == &next ? "worker taken (idle)" : "worker forked");
        if (make(&w, dvm_field(rq, DVM_RQ_TEMPLATE), dvm_field(rq, DVM_RQ_SOURCE),
                 dvm_field(rq, DVM_RQ_LABEL), dvm_field(rq, DVM_RQ_HOST),
                 strchr(dvm_field(rq, DVM_RQ_FLAGS), 'r') != NULL, &err) < 0)
            fail(&w, &err);
        if (stopping)
            finish(&w, 1);
        serve(&w);
        if (next_job(&w, &next) != 1)
            leave(&w, 0);
        rq = &next;
        client = next.fds[0];
        out = next.fds[1];
        next.fds[0] = -1;       /* w.client's, from here on */
    }
}

/* ---- a preload ---- */

/* Parked: paused, reported, waiting for a request. 1: a claim is in *m
 * (its descriptors are the caller's); 0: the preload must go (a stop
 * signal, the service's end); -1: it cannot be parked. */
static int park(struct worker *w, struct dvm_msg *m, struct qerr *err)
{
    /* Told before the pause is seen: whoever sees it paused may ask for it
     * and be sure the service has it. A claim meanwhile waits in line. */
    const char *fields[] = { w->t.name, w->d.name };
    tell_service(w, DVM_PARKED, fields, 2, NULL, 0);
    struct vmm *vmm = dispvm_template_vmm(&w->q, &w->t, err);
    if (!vmm || vmm_suspend(vmm, w->d.name, err) < 0)
        return -1;
    qsay(w->progress, "--> Preloaded %s (paused)", w->d.name);
    if (!w->d.host[0])
        reap_daemons();     /* a recycled worker's last daemon, by now ended */
    if (w->progress)
        fclose(w->progress);
    w->progress = NULL;
    qtime_start(-1, "worker (preload)");
    for (;;) {
        if (wait_for(w->ctl, -1) < 0 || dvm_recv(w->ctl, m, 0, err) != 0)
            return 0;
        if (m->type == DVM_CLAIM && m->nfds == 2)
            return 1;
        dvm_msg_close_fds(m);
    }
}

/* The priority of a preload's worker and of its domain's emulator:
 * DISPVM_PRELOAD_NICE until a request claims it, 0 for the request. */
static void preload_priority(struct worker *w, struct vmm *vmm, int nice)
{
    struct qerr e;
    if (qproc_set_nice(getpid(), nice) < 0)
        qsay(w->progress, "warning: cannot set this worker's priority to nice %d: %s", nice,
             strerror(errno));
    if (vmm && w->d.name[0] && vmm_domain_nice(vmm, w->d.name, nice, &e) < 0)
        qsay(w->progress, "warning: %s", e.msg);
}

/* One preload of the pool `key` (T here, or T@HOST), parked until a
 * request claims it and served; false when it went unclaimed. */
static bool preload_one(struct worker *w, const char *key)
{
    struct qerr err;
    char tname[DVM_POOL_KEY_MAX];
    snprintf(tname, sizeof tname, "%s", key);
    char *at = strchr(tname, '@');
    if (at)
        *at++ = '\0';
    if (make(w, tname, "dom0", "gray", at ? at : QHOST_LOCAL, false, &err) < 0)
        fail(w, &err);
    warm_up(w);
    static struct dvm_msg m;
    for (;;) {
        int parked = park(w, &m, &err);
        if (parked < 0)
            fail(w, &err);
        if (parked == 0)
            return false;
        w->client = m.fds[0];
        take_settings(w, &m, m.fds[1]);
        qtime_mark("claim received");
        dispvm_emulator_baseline(&w->q, &w->d);
        struct vmm *vmm = dispvm_template_vmm(&w->q, &w->t, &err);
        preload_priority(w, vmm, 0);
        int rc = vmm ? dispvm_preload_claim(&w->q, &w->d, dvm_field(&m, DVM_RQ_TEMPLATE),
                                            dvm_field(&m, DVM_RQ_SOURCE),
                                            dvm_field(&m, DVM_RQ_LABEL), &err)
                     : -1;
        if (rc == 1) {          /* another network, or template: not this one */
            tell_service(w, DVM_DECLINE, m.field, m.nfields, m.fds, 2);
            dvm_msg_close_fds(&m);
            w->client = -1;
            preload_priority(w, vmm, DISPVM_PRELOAD_NICE);
            continue;
        }
        qtime_mark("claimed (record, rules)");
        if (rc == 0 && vmm_resume(vmm, w->d.name, &err) < 0)
            rc = -1;
        qtime_mark("resumed");
        if (rc < 0) {
            /* A broken preload never fails a request: the service gives
             * it to a new DispVM, and this one goes. */
            qsay(w->progress, "--> Preloaded %s failed (%s): restoring one instead", w->d.name,
                 err.msg);
            tell_service(w, DVM_BROKEN, m.field, m.nfields, m.fds, 2);
            dvm_msg_close_fds(&m);
            w->client = -1;
            finish(w, 1);
        }
        m.fds[0] = -1;          /* the client's connection is w->client's now */
        dvm_msg_close_fds(&m);
        qsay(w->progress, "--> Using preloaded %s", w->d.name);
        serve(w);
        tell_service(w, DVM_SERVED, NULL, 0, NULL, 0);
        return true;
    }
}

void dispvm_worker_preload(int ctl, const char *pool, int out)
{
    struct worker w;
    setup(&w, ctl, true);
    if (out >= 0 && (w.progress = fdopen(out, "w")))
        setvbuf(w.progress, NULL, _IOLBF, 0);
    char key[DVM_POOL_KEY_MAX];
    snprintf(key, sizeof key, "%s", pool);
    static struct dvm_msg next;
    /* Served, its DispVM gone: the pool's next preload, when the service
     * asks for it. */
    for (;;) {
        preload_priority(&w, NULL, DISPVM_PRELOAD_NICE);
        if (!preload_one(&w, key))
            finish(&w, 0);
        if (next_job(&w, &next) != 1)
            leave(&w, 0);
        snprintf(key, sizeof key, "%s", dvm_field(&next, 0));
        dvm_msg_close_fds(&next);
    }
}
