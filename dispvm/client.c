/* The request's side of a DispVM, apart from the rest so that the
 * programs that only ask (qfile-daemon-dvm, qvm-run --dispvm) load
 * nothing of the database, the hypervisor or XML: a connection to the
 * DispVM service (started when none answers), the request, the session
 * in the DispVM, the end. */
#include "client.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../orchestrator/monitor.h"
#include "../orchestrator/runtime.h"
#include "../orchestrator/timing.h"
#include "../orchestrator/util.h"
#include "../orchestrator/vm.h"
#include "proto.h"
#include "service.h"
#include "session.h"

static int dial(const char *path)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof addr.sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(addr.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* qubes-dvmd beside this program (QUBES_DVMD names another). */
static int spawn_service(struct qerr *err)
{
    char prog[PATH_MAX];
    if (qsibling_program("qubes-dvmd", "QUBES_DVMD", prog, sizeof prog, err) < 0)
        return -1;
    char *argv[] = { prog, NULL };
    return qrun_program(argv, err) < 0 ? qerr_prefix(err, "cannot start the DispVM service") : 0;
}

int dispvm_service_connect(const struct qubes_config *cfg, bool start, int *sock,
                           struct qerr *err)
{
    char path[PATH_MAX];
    if (qrt_path(cfg, QRT_DVMD_SOCK, path, sizeof path, err) < 0)
        return -1;
    bool spawned = false;
    for (long end = qnow_ms() + 10000;;) {
        if ((*sock = dial(path)) >= 0)
            return 0;
        if (errno != ENOENT && errno != ECONNREFUSED)
            return qerr_errno(err, errno, "cannot reach the DispVM service at %s", path);
        if (!start)
            return 1;
        if (!spawned) {
            if (spawn_service(err) < 0)
                return -1;
            spawned = true;
            continue;
        }
        if (qnow_ms() > end)
            return qerr_set(err, "the DispVM service does not answer at %s (see $QUBES_RUN_DIR/%s)",
                            path, QRT_DVMD_LOG);
        usleep(20000);
    }
}

/* Waits for the next message on `sock`; a stop signal ends the wait. */
int dispvm_answer(int sock, struct dvm_msg *m, struct qerr *err)
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
        [DVM_RQ_HOST] = r->host ? r->host : "",
    };
    int out = qtime_on() ? qtime_fd() : r->progress ? fileno(r->progress) : 2;
    return dvm_send(sock, DVM_REQUEST, fields, DVM_RQ_NFIELDS, &out, 1, err);
}

int dispvm_run(const struct qubes_config *cfg, const struct dispvm_request *r, int *status, struct qerr *err)
{
    dispvm_session_signals();
    int sock;
    if (dispvm_service_connect(cfg, true, &sock, err) < 0)
        return -1;
    cleanup_close int fd = sock;
    qtime_mark("service connected");
    struct dvm_msg m;
    if (send_request(sock, r, err) < 0 || dispvm_answer(sock, &m, err) < 0)
        return -1;
    dvm_msg_close_fds(&m);
    if (m.type != DVM_READY)
        return qerr_set(err, "the DispVM service answered %u instead of READY", m.type);
    char name[QUBES_NAME_MAX + 1], qrexec[PATH_MAX];
    snprintf(name, sizeof name, "%s", dvm_field(&m, 0));
    if (qvm_check_name(name, err) < 0 ||
        qrt_vm_path(cfg, name, QRT_QREXEC_SOCK, qrexec, sizeof qrexec, err) < 0)
        return -1;
    qtime_mark("READY: the DispVM runs");

    /* Its GUI starts with it: the monitor layout goes first. */
    char layout[QMONITOR_MAX * 32] = "";
    struct qerr e;
    if (qmonitor_layout(cfg, layout, sizeof layout, NULL, &e) < 0)
        qsay(r->progress, "warning: %s", e.msg);
    struct dispvm_job job = { r->service, r->source, r->command, r->user };
    int rc = dispvm_session(name, qrexec, &job, layout, status, err);
    /* The end: the worker tears the DispVM down (a hang-up says it too). */
    const char *done[] = { "" };
    if (dvm_send(sock, DVM_DONE, done, 1, NULL, 0, &e) == 0 && r->wait_teardown) {
        struct pollfd p = { sock, POLLIN, 0 };
        while (poll(&p, 1, -1) < 0 && !dispvm_stopped())
            ;
    }
    return rc;
}

