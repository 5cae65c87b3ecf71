#include "session.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../orchestrator/agent_client.h"
#include "../orchestrator/monitor.h"
#include "../orchestrator/runtime.h"
#include "../orchestrator/util.h"
#include "teardown.h"

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

/* In the child: the guest learns it was restored as another VM (its name,
 * MAC and address) before anything runs in it. Exits 125 when the service
 * could not run. */
static void __attribute__((noreturn)) session(const struct dispvm_state *d, const char *layout)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);   /* never outlive qfile-daemon-dvm */
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    struct agent_conn c;
    struct qerr e;
    int st = 0;
    char ip[24];
    const char *user = d->user && strcmp(d->user, "DEFAULT") != 0 ? d->user : "user";
    snprintf(ip, sizeof ip, "%s/%d", d->net.ip, d->net.prefix);
    if (agent_connect(d->qrexec_sock, 30000, &c, &e) < 0 ||
        agent_identity(&c, d->name, d->net.on ? d->net.mac : "", d->net.on ? ip : "",
                       d->net.gateway, &e) < 0 ||
        (layout[0] && qmonitor_send_on(&c, layout, &e) < 0) ||
        (d->command ? agent_exec(&c, user, d->command, 0, 1, 2, &st, &e)
                    : agent_service(&c, user, d->service, d->source, 0, 1, 2, &st, &e)) < 0) {
        qsay(stderr, "qfile-daemon-dvm: %s: %s", d->name, e.msg);
        _exit(125);
    }
    _exit(st & 0xff);
}

int dispvm_serve(const struct dispvm_state *d, const char *layout, int *status,
                 struct qerr *err)
{
    pid_t pid = fork();
    if (pid < 0)
        return qerr_errno(err, errno, "fork");
    if (pid == 0)
        session(d, layout);
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
        return qerr_set(err, "the service could not run in %s", d->name);
    *status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return 0;
}

/* A detached process keeps none of its caller's descriptors: an inherited
 * pipe would keep the caller from seeing end-of-file until it exits. */
static void detach_stdio(void)
{
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
    }
    close_range(3, ~0U, 0);
}

int dispvm_detach(void (*on_stop)(int))
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid != 0) {
        int st = 1;
        if (pid > 0)
            waitpid(pid, &st, 0);
        return pid > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 1 : -1;
    }
    setsid();
    signal(SIGTERM, on_stop);
    signal(SIGINT, on_stop);
    signal(SIGHUP, on_stop);
    pid_t grandchild = fork();
    if (grandchild != 0)
        _exit(grandchild > 0 ? 0 : 1);
    detach_stdio();
    return 0;
}

int dispvm_teardown_detached(struct qubes *q, const struct dispvm_state *d)
{
    char log[PATH_MAX];
    if (qrt_path(&q->cfg, QRT_TEARDOWN_LOG, log, sizeof log, NULL) < 0)
        return -1;
    int r = dispvm_detach(SIG_IGN);
    if (r != 0)
        return r > 0 ? 0 : -1;
    /* Our libvirt connection is not the child's to use. */
    struct qubes q2;
    struct qerr e;
    struct dispvm_state mine = *d;
    if (qubes_open(&q2, false, &e) < 0 || dispvm_teardown(&q2, &mine, &e) < 0) {
        cleanup_close int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd >= 0)
            dprintf(fd, "%lld %s: %s\n", (long long)time(NULL), d->name, e.msg);
    }
    qubes_close(&q2);
    _exit(0);
}
