#include "session.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../orchestrator/agent_client.h"
#include "../orchestrator/monitor.h"
#include "../orchestrator/timing.h"
#include "../orchestrator/util.h"

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

/* In the child. Exits 125 when the service could not run. */
static void __attribute__((noreturn)) session(const char *sock, const struct dispvm_job *r,
                                              const char *layout)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);   /* never outlive the request */
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    qtime_who("session (child)");
    struct agent_conn c;
    struct qerr e;
    int st = 0;
    const char *user = r->user && strcmp(r->user, "DEFAULT") != 0 ? r->user : "user";
    int rc = agent_connect(sock, 10000, &c, &e);
    if (rc == 0 && layout[0]) {
        rc = qmonitor_send_on(&c, layout, &e);
        qtime_mark("monitor layout");
    }
    if (rc == 0)
        rc = r->command ? agent_exec(&c, user, r->command, 0, 1, 2, &st, &e)
                        : agent_service(&c, user, r->service, r->source, 0, 1, 2, &st, &e);
    qtime_mark("service: request to EXIT");
    if (rc < 0) {
        qsay(stderr, "qfile-daemon-dvm: %s", e.msg);
        _exit(125);
    }
    _exit(st & 0xff);
}

int dispvm_session(const char *name, const char *sock, const struct dispvm_job *r,
                   const char *layout, int *status, struct qerr *err)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return qerr_errno(err, errno, "fork");
    if (pid == 0)
        session(sock, r, layout);
    int st;
    for (;;) {
        pid_t w = waitpid(pid, &st, 0);
        if (w == pid)
            break;
        if (w < 0 && errno == EINTR && stop_signal) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return qerr_set(err, "stopped by signal %d", (int)stop_signal);
        }
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) == 125)
        return qerr_set(err, "the service could not run in %s", name);
    *status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return 0;
}
