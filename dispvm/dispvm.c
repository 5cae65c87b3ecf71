/* The chains of dispvm.h, step by step; the steps are in the files named
 * after them: state (what a DispVM and its template are), prepare (the
 * savefile set), restore, preload (a claim), worker (one DispVM's life),
 * service (qubes-dvmd: requests, workers, the pool), session (a request's
 * side), teardown (the end, the sweep). */
#include "dispvm.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../orchestrator/monitor.h"
#include "../orchestrator/runtime.h"
#include "../orchestrator/timing.h"
#include "../orchestrator/util.h"
#include "prepare.h"
#include "proto.h"
#include "service.h"
#include "session.h"
#include "teardown.h"

int dispvm_savefile_state(struct qubes *q, const char *template_name, bool *usable,
                          char *why, size_t whylen, struct qerr *err)
{
    struct dispvm_template t;
    if (dispvm_template_find(q, template_name, &t, err) < 0)
        return -1;
    return dispvm_set_usable(q, &t, usable, why, whylen, err);
}

int dispvm_prepare(struct qubes *q, const char *template_name, FILE *progress,
                   struct qerr *err)
{
    struct dispvm_template t;
    cleanup_close int lock = qrt_lock(&q->cfg, QRT_DISPVM_LOCK, err);
    if (lock < 0 || qubes_load_for_reading(q, err) < 0 ||
        dispvm_template_find(q, template_name, &t, err) < 0 ||
        dispvm_set_make(q, &t, progress, err) < 0)
        return -1;
    qclose(&lock);
    /* Preloads restored from the old savefile go; new ones come. */
    if (dispvm_preload_fill(q, t.name, progress, err) < 0)
        return qerr_prefix(err, "the savefile is ready, but preloading failed");
    return 0;
}

/* Waits for the next message on `sock`; a stop signal ends the wait. */
static int answer(int sock, struct dvm_msg *m, struct qerr *err)
{
    struct pollfd p = { sock, POLLIN, 0 };
    for (;;) {
        if (dispvm_stopped())
            return qerr_set(err, "stopped by signal %d", dispvm_stopped());
        if (poll(&p, 1, -1) > 0)
            break;
    }
    int rc = dvm_recv(sock, m, 0, err);
    if (rc == 1)
        return qerr_set(err, "the DispVM service ended the request without an answer (its "
                        "log: $QUBES_RUN_DIR/%s)", QRT_DVMD_LOG);
    if (rc == 0 && m->type == DVM_ERROR) {
        qerr_set(err, "%s", dvm_field(m, 0));
        dvm_msg_close_fds(m);
        return -1;
    }
    return rc;
}

int dispvm_preload_fill(struct qubes *q, const char *template_name, FILE *progress,
                        struct qerr *err)
{
    if (qubes_load_for_reading(q, err) < 0)
        return -1;
    int sock, rc = dispvm_service_connect(&q->cfg, dispvm_preload_target(q->coll) > 0, &sock,
                                          err);
    if (rc != 0)
        return rc < 0 ? -1 : 0;     /* no service, and none needed */
    cleanup_close int fd = sock;
    int out = progress ? fileno(progress) : -1;
    cleanup_close int null = out < 0 ? open("/dev/null", O_WRONLY | O_CLOEXEC) : -1;
    const char *fields[] = { template_name };
    int fds[] = { out >= 0 ? out : null };
    struct dvm_msg m;
    if (fds[0] < 0 || dvm_send(sock, DVM_FILL, fields, 1, fds, 1, err) < 0 ||
        answer(sock, &m, err) < 0)
        return -1;
    dvm_msg_close_fds(&m);
    return m.type == DVM_FILLED ? 0 : qerr_set(err, "the DispVM service answered %u", m.type);
}

/* The request, as the service takes it (proto.h, DVM_RQ_*). */
static int send_request(int sock, const struct dispvm_request *r, struct qerr *err)
{
    char flags[8] = "";
    const char *min_free = getenv("QUBES_DISPVM_MIN_FREE_MIB"),
               *feed = getenv("QUBES_DISPVM_FEED");
    if (r->regenerate)
        strcat(flags, "r");
    if (r->wait_teardown)
        strcat(flags, "w");
    if (r->progress)
        strcat(flags, "p");
    if (qtime_on())
        strcat(flags, "t");
    const char *fields[DVM_RQ_NFIELDS] = {
        [DVM_RQ_TEMPLATE] = r->template_name ? r->template_name : "",
        [DVM_RQ_SOURCE] = r->source,
        [DVM_RQ_LABEL] = r->label ? r->label : "",
        [DVM_RQ_FLAGS] = flags,
        [DVM_RQ_MIN_FREE] = min_free ? min_free : "",
        [DVM_RQ_FEED] = feed ? feed : "",
    };
    int out = qtime_on() ? qtime_fd() : r->progress ? fileno(r->progress) : 2;
    return dvm_send(sock, DVM_REQUEST, fields, DVM_RQ_NFIELDS, &out, 1, err);
}

int dispvm_run(struct qubes *q, const struct dispvm_request *r, int *status, struct qerr *err)
{
    dispvm_session_signals();
    int sock;
    if (dispvm_service_connect(&q->cfg, true, &sock, err) < 0)
        return -1;
    cleanup_close int fd = sock;
    qtime_mark("service connected");
    struct dvm_msg m;
    if (send_request(sock, r, err) < 0 || answer(sock, &m, err) < 0)
        return -1;
    dvm_msg_close_fds(&m);
    if (m.type != DVM_READY)
        return qerr_set(err, "the DispVM service answered %u instead of READY", m.type);
    char name[QUBES_NAME_MAX + 1], qrexec[PATH_MAX];
    snprintf(name, sizeof name, "%s", dvm_field(&m, 0));
    if (qvm_check_name(name, err) < 0 ||
        qrt_vm_path(&q->cfg, name, QRT_QREXEC_SOCK, qrexec, sizeof qrexec, err) < 0)
        return -1;
    qtime_mark("READY: the DispVM runs");

    /* Its GUI starts with it: the monitor layout goes first. */
    char layout[QMONITOR_MAX * 32] = "";
    struct qerr e;
    if (qmonitor_layout(&q->cfg, layout, sizeof layout, NULL, &e) < 0)
        qsay(r->progress, "warning: %s", e.msg);
    struct dispvm_job job = { r->service, r->source, r->command, r->user };
    int rc = dispvm_session(name, qrexec, &job, layout, status, err);
    qtime_mark("session (fork to exit)");
    /* The end: the worker tears the DispVM down (a hang-up says it too). */
    const char *done[] = { "" };
    if (dvm_send(sock, DVM_DONE, done, 1, NULL, 0, &e) == 0 && r->wait_teardown) {
        struct pollfd p = { sock, POLLIN, 0 };
        while (poll(&p, 1, -1) < 0 && !dispvm_stopped())
            ;
    }
    return rc;
}

int dispvm_service(bool foreground, struct qerr *err)
{
    return dispvm_service_main(foreground, err);
}

int dispvm_service_end(const struct qubes_config *cfg, struct qerr *err)
{
    return dispvm_service_stop(cfg, err);
}

int dispvm_cleanup(struct qubes *q, int *removed, FILE *progress, struct qerr *err)
{
    bool changed = false;
    *removed = 0;
    if (qubes_load_for_writing(q, false, err) < 0)
        return -1;
    int rc = dispvm_sweep_records(q, removed, &changed, progress, err);
    if (rc == 0) {
        dispvm_sweep_run_dirs(q, removed, progress);
        dispvm_sweep_memory_files(q, progress);
    }
    return qubes_commit(q, rc < 0 ? rc : changed ? 0 : QUBES_UNCHANGED, err);
}
