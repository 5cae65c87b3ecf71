/* The chains of dispvm.h, step by step; the steps are in the files named
 * after them: state (what a DispVM and its template are), prepare (the
 * savefile set), place (which host), restore, remote (a set and a restore
 * on another host), preload (a claim), worker (one DispVM's life),
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
    return dispvm_prepare_on(q, template_name, NULL, progress, err);
}

int dispvm_prepare_on(struct qubes *q, const char *template_name, const char *host,
                      FILE *progress, struct qerr *err)
{
    struct dispvm_template t;
    cleanup_close int lock = qrt_lock(&q->cfg, QRT_DISPVM_LOCK, err);
    if (lock < 0 || qubes_load_for_reading(q, err) < 0 ||
        dispvm_template_find_on(q, template_name, host, &t, err) < 0 ||
        dispvm_set_make(q, &t, progress, err) < 0)
        return -1;
    qclose(&lock);
    /* The preloads of that host's pool (dispvm/proto.h). */
    char key[DVM_POOL_KEY_MAX];
    dvm_pool_key(key, t.name, t.host);
    /* Preloads restored from the old savefile go; new ones come. */
    if (dispvm_preload_fill(q, key, progress, err) < 0)
        return qerr_prefix(err, "the savefile is ready, but preloading failed");
    return 0;
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
        dispvm_answer(sock, &m, err) < 0)
        return -1;
    dvm_msg_close_fds(&m);
    return m.type == DVM_FILLED ? 0 : qerr_set(err, "the DispVM service answered %u", m.type);
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
