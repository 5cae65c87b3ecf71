#include "session.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../orchestrator/agent_client.h"
#include "../orchestrator/monitor.h"
#include "../orchestrator/timing.h"
#include "../orchestrator/util.h"
#include "../qrexec/mux.h"

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    stop_signal = sig;
}

void dispvm_session_signals(void)
{
    struct sigaction sa = { .sa_handler = on_signal };
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int dispvm_stopped(void)
{
    return stop_signal;
}

int dispvm_session(const char *name, const char *sock, const struct dispvm_job *r,
                   const char *layout, int *status, struct qerr *err)
{
    /* In this process: a stop signal ends the relay (qmux_stop_on), and
     * the closed connection ends the session in the guest. */
    qmux_stop_on(&stop_signal);
    struct agent_conn c;
    const char *user = r->user && strcmp(r->user, "DEFAULT") != 0 ? r->user : "user";
    int rc = agent_connect(sock, 10000, &c, err);
    if (rc == 0 && layout[0]) {
        rc = qmonitor_send_on(&c, layout, err);
        qtime_mark("monitor layout");
    }
    if (rc == 0)
        rc = r->command ? agent_exec(&c, user, r->command, 0, 1, 2, status, err)
                        : agent_service(&c, user, r->service, r->source, 0, 1, 2, status, err);
    agent_close(&c);
    qmux_stop_on(NULL);
    qtime_mark("service: request to EXIT");
    if (rc < 0 && stop_signal)
        return qerr_set(err, "stopped by signal %d", (int)stop_signal);
    if (rc < 0)
        return qerr_prefix(err, "the service could not run in %s", name);
    *status &= 0xff;
    return 0;
}
