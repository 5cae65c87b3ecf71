/* A VM's qrexec-daemon (orchestrator/tools/qrexec-daemon.c) and the host's
 * callers (orchestrator/agent_client.h) against a hostile guest: the
 * helper tests/helpers/hostile-agent.c plays the agent on the VM's channel
 * socket and lies, goes silent, stops mid-frame, sends control
 * characters, floods beyond its credit, sends frames too long, of unknown
 * types and for sessions that do not exist, and makes CALLs dom0 must
 * refuse. Every request must end within its deadline with an error that
 * says what happened, the daemon must stay up with its memory bounded, and
 * when the channel ends it must exit and remove its socket. A daemon
 * started by a process that goes on (the DispVM service) tells it when
 * its agent answered, or that it ended before.
 * Usage: test_agent HOSTILE-AGENT [BINDIR] (default $QUBES_TEST_BIN) */
#include "../../guest/protocol.h"
#include "../../orchestrator/agent_client.h"
#include "../../orchestrator/monitor.h"
#include "../../orchestrator/runtime.h"
#include "../../orchestrator/util.h"
#include "../../qrexec/daemon.h"
#include "../testutil.h"

#include <limits.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

static const char *helper, *bindir;
static char top[PATH_MAX], run[PATH_MAX];
static const char *step = "start";
static pid_t agent_pid = -1, daemon_pid = -1;

/* A test that hangs is a failure, not a stuck `prove`. */
static void on_alarm(int sig)
{
    (void)sig;
    char msg[256];
    int n = snprintf(msg, sizeof msg, "not ok - hung in: %s\nBail out! hung in: %s\n", step,
                     step);
    (void)!write(1, msg, (size_t)n);
    if (agent_pid > 0)
        kill(-agent_pid, SIGKILL);
    if (daemon_pid > 0)
        kill(daemon_pid, SIGKILL);
    _exit(1);
}

struct vm {
    const char *name;
    char agent_sock[PATH_MAX], sock[PATH_MAX], log[PATH_MAX];
    pid_t agent, daemon;
    int agent_out;              /* the helper's standard output */
    char seen[65536];           /* what it has printed so far */
    size_t seenlen;
    struct agent_conn c;
};

/* Reads the helper's lines until one starts with `prefix` (kept in
 * v->seen, as every line read); 1 when it came within `ms`. */
static int expect_line(struct vm *v, const char *prefix, long ms, char *line, size_t len)
{
    char buf[1024];
    long end = now_ms() + ms;
    while (now_ms() < end) {
        if (read_line(v->agent_out, buf, sizeof buf, end - now_ms()) < 0)
            return 0;
        int n = snprintf(v->seen + v->seenlen, sizeof v->seen - v->seenlen, "%s\n", buf);
        if (n > 0 && (size_t)n < sizeof v->seen - v->seenlen)
            v->seenlen += (size_t)n;
        if (strncmp(buf, prefix, strlen(prefix)) == 0) {
            if (line)
                snprintf(line, len, "%s", buf);
            return 1;
        }
    }
    return 0;
}

static char *daemon_log(struct vm *v)
{
    char *t = slurp(v->log, NULL);
    return t ? t : strdup("");
}

static int log_has(struct vm *v, const char *what)
{
    char *t = daemon_log(v);
    int r = strstr(t, what) != NULL;
    free(t);
    return r;
}

/* Waits up to `ms` for the daemon's log to say `what`. */
static int wait_log(struct vm *v, const char *what, long ms)
{
    for (long end = now_ms() + ms; now_ms() < end; usleep(20000))
        if (log_has(v, what))
            return 1;
    return log_has(v, what);
}

/* A /proc/PID/status field in kB, -1 when the process is gone. */
static long proc_kb(pid_t pid, const char *field)
{
    char path[64], line[256];
    long kb = -1;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, field, strlen(field)) == 0 && line[strlen(field)] == ':')
            kb = atol(line + strlen(field) + 1);
    if (f)
        fclose(f);
    return kb;
}

static int alive(pid_t pid)
{
    return waitpid(pid, NULL, WNOHANG) == 0 && kill(pid, 0) == 0;
}

/* The hostile agent on the VM's channel socket; v->log: where a daemon
 * that detaches logs (its run directory). */
static void start_agent(struct vm *v, const char *name, const char *mode)
{
    struct qerr err;
    memset(v, 0, sizeof *v);
    v->name = name;
    snprintf(v->agent_sock, sizeof v->agent_sock, "%s/vms/%s/agent.sock", run, name);
    snprintf(v->sock, sizeof v->sock, "%s/vms/%s/qrexec.sock", run, name);
    snprintf(v->log, sizeof v->log, "%s/vms/%s/qrexec.log", run, name);
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/vms/%s", run, name);
    if (qmkdirs(dir, &err) < 0) {
        fprintf(stderr, "test_agent: %s\n", err.msg);
        exit(99);
    }
    int out[2];
    if (pipe2(out, O_CLOEXEC) < 0)
        exit(99);
    fflush(stdout);
    v->agent = fork();
    if (v->agent == 0) {
        setpgid(0, 0);
        dup2(out[1], 1);
        execl(helper, helper, v->agent_sock, mode, (char *)NULL);
        _exit(127);
    }
    agent_pid = v->agent;
    close(out[1]);
    v->agent_out = out[0];
    if (!expect_line(v, "listening", 5000, NULL, 0)) {
        fprintf(stderr, "test_agent: %s did not start\n", helper);
        exit(99);
    }
}

/* The hostile agent, then its qrexec-daemon in the foreground; returns
 * once dom0's callers may connect (0) or not (-1). */
static int start_vm(struct vm *v, const char *name, const char *mode)
{
    struct qerr err;
    start_agent(v, name, mode);
    snprintf(v->log, sizeof v->log, "%s/%s.log", top, name);
    v->daemon = fork();
    if (v->daemon == 0) {
        int lfd = open(v->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        dup2(null, 0);
        dup2(null, 1);
        dup2(lfd, 2);
        char prog[PATH_MAX];
        snprintf(prog, sizeof prog, "%s/qrexec-daemon", bindir);
        execl(prog, "qrexec-daemon", "--foreground", name, (char *)NULL);
        _exit(127);
    }
    daemon_pid = v->daemon;
    return agent_connect(v->sock, 10000, &v->c, &err);
}

/* The agent killed: the end of the VM's channel. */
static void stop_agent(struct vm *v)
{
    kill(-v->agent, SIGKILL);
    waitpid(v->agent, NULL, 0);
    agent_pid = -1;
    close(v->agent_out);
}

/* The channel ends (the agent is killed): the daemon must exit 0 at once,
 * remove its socket, and fail a request still under way. */
static void end_vm(struct vm *v)
{
    agent_close(&v->c);
    stop_agent(v);
    int ws = wait_child(v->daemon, 5000);
    daemon_pid = -1;
    ok(ws != -1 && WIFEXITED(ws) && WEXITSTATUS(ws) == 0,
       "%s: the agent gone (channel EOF), the daemon exits 0 (%s %d)", v->name,
       ws == -1 ? "still running after 5 s:" : WIFEXITED(ws) ? "status" : "signal",
       ws == -1 ? 0 : WIFEXITED(ws) ? WEXITSTATUS(ws) : WTERMSIG(ws));
    ok(access(v->sock, F_OK) < 0 && errno == ENOENT, "%s: and removes %s", v->name, v->sock);
    ok(log_has(v, "channel closed"), "%s: and says the channel closed", v->name);
    char *t = daemon_log(v);
    ok(!strstr(t, "Sanitizer") && !strstr(t, "runtime error"),
       "%s: no sanitizer report in the daemon's log", v->name);
    ok(!strpbrk(t, "\x1b\x07\r"), "%s: no raw control character in the daemon's log", v->name);
    free(t);
}

struct res {
    int rc, status;
    long took;
    char err[QERR_MSG_MAX];
    char out[4096];
};

static void drain(int fd, char *buf, size_t len)
{
    size_t n = 0;
    ssize_t r;
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    while ((r = read(fd, buf + n, len - 1 - n)) > 0)
        n += (size_t)r;
    buf[n] = '\0';
}

/* EXEC `cmd` with a deadline (0: none); its output in r->out. */
static void exec_req(struct agent_conn *c, const char *cmd, long ms, struct res *r)
{
    int p[2];
    struct qerr e = { 0, "" };
    if (pipe2(p, O_CLOEXEC) < 0)
        exit(99);
    agent_deadline(c, ms);
    r->status = 12345;
    long t0 = now_ms();
    r->rc = agent_exec(c, "user", cmd, -1, p[1], -1, &r->status, &e);
    r->took = now_ms() - t0;
    agent_deadline(c, 0);
    close(p[1]);
    drain(p[0], r->out, sizeof r->out);
    close(p[0]);
    snprintf(r->err, sizeof r->err, "%s", r->rc < 0 ? e.msg : "");
}

/* The same in a child, its result back through a pipe: for sessions at
 * once. `out_fd` (or -1: a pipe of its own) takes the output. */
struct bg {
    pid_t pid;
    int fd;
};

static struct bg exec_bg(struct vm *v, const char *cmd, long ms, int out_fd)
{
    struct bg b;
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        exit(99);
    agent_close(&v->c);         /* each its own connection */
    fflush(stdout);
    b.pid = fork();
    if (b.pid == 0) {
        struct res r;
        memset(&r, 0, sizeof r);
        if (out_fd >= 0) {
            struct qerr e = { 0, "" };
            agent_deadline(&v->c, ms);
            r.status = 12345;
            long t0 = now_ms();
            r.rc = agent_exec(&v->c, "user", cmd, -1, out_fd, -1, &r.status, &e);
            r.took = now_ms() - t0;
            snprintf(r.err, sizeof r.err, "%s", r.rc < 0 ? e.msg : "");
        } else {
            exec_req(&v->c, cmd, ms, &r);
        }
        (void)!write(p[1], &r, sizeof r);
        _exit(0);
    }
    close(p[1]);
    b.fd = p[0];
    return b;
}

static int bg_result(struct bg b, long ms, struct res *r)
{
    struct pollfd p = { b.fd, POLLIN, 0 };
    int got = poll(&p, 1, (int)ms) == 1 && read(b.fd, r, sizeof *r) == (ssize_t)sizeof *r;
    close(b.fd);
    if (wait_child(b.pid, got ? 5000 : 0) == -1 || !got) {
        memset(r, 0, sizeof *r);
        r->rc = -2;
        snprintf(r->err, sizeof r->err, "(no result within %ld ms)", ms);
        return 0;
    }
    return 1;
}

/* ---- lies ---- */

static void lies(void)
{
    struct vm v;
    struct res r;
    struct qerr err;
    step = "lies: start";
    ok(start_vm(&v, "liar", "lies") == 0,
       "lies: the daemon answers on its socket once the hostile agent has answered HELLO");

    step = "lies: echo";
    exec_req(&v.c, "echo hello", 5000, &r);
    ok(r.rc == 0 && r.status == 0 && strcmp(r.out, "hello") == 0,
       "lies: a proper answer goes through (rc %d status %d out '%s' %s)", r.rc, r.status, r.out,
       r.err);

    step = "lies: short-exit";
    exec_req(&v.c, "short-exit", 5000, &r);
    ok(r.rc < 0 && r.status == 12345,
       "lies: an EXIT frame shorter than a status is an error, not status 0");
    diag("short EXIT: rc %d status %d %s", r.rc, r.status, r.err);
    ok(r.took < 5000, "lies: and it ends before its deadline (%ld ms)", r.took);

    step = "lies: ctrl";
    exec_req(&v.c, "ctrl", 5000, &r);
    ok(r.rc < 0 && strstr(r.err, "refused the command") && strstr(r.err, "no such user"),
       "lies: an ERROR frame fails the request with its text");
    char *shown = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&shown, &len);
    qprint_text(f, r.err);
    fclose(f);
    ok(!strpbrk(shown, "\x1b\x07\r") && !strstr(shown, "\xc2\x9b") &&
           strstr(shown, "\\x1b]0;owned\\x07\\x1b[2J\\xc2\\x9b6n\\x0ddone"),
       "lies: and its text prints escaped: %s", shown);
    free(shown);

    step = "lies: silent";
    exec_req(&v.c, "silent", 1500, &r);
    ok(r.rc < 0 && strstr(r.err, "did not answer within 1 s") && r.took >= 1400 &&
           r.took < 4500,
       "lies: a silent agent: the request ends at its deadline (%ld ms of 1500): %s", r.took,
       r.err);
    ok(expect_line(&v, "close ", 3000, NULL, 0),
       "lies: and the daemon closes that session on the channel (the agent saw CLOSE)");

    /* The host's own requests have a deadline: identity and the monitor
     * layout at once, each its own session. */
    step = "lies: identity and monitor";
    agent_close(&v.c);
    fflush(stdout);
    pid_t id = fork();
    if (id == 0) {
        struct qerr e;
        long t0 = now_ms();
        int rc = agent_identity(&v.c, "disp1", "", "", "", &e);
        long took = now_ms() - t0;
        _exit(rc < 0 && strstr(e.msg, "did not answer within") && took >= AGENT_REQUEST_MS - 100 &&
                      took < AGENT_REQUEST_MS + 3000 ? 0 : 1);
    }
    long t0 = now_ms();
    int rc = qmonitor_send_on(&v.c, "1920 1080 0 0\n", &err);
    long took = now_ms() - t0;
    ok(rc < 0 && strstr(err.msg, "did not answer within") && took >= AGENT_REQUEST_MS - 100 &&
           took < AGENT_REQUEST_MS + 3000,
       "lies: a monitor layout nobody answers ends after its deadline (%ld ms): %s", took,
       rc < 0 ? err.msg : "");
    int ws = wait_child(id, 5000);
    ok(ws != -1 && WIFEXITED(ws) && WEXITSTATUS(ws) == 0,
       "lies: and at the same time an identity nobody answers, after its own");

    step = "lies: echo after silence";
    exec_req(&v.c, "echo still", 5000, &r);
    ok(r.rc == 0 && strcmp(r.out, "still") == 0,
       "lies: silent sessions stall nothing else: a request still works (%s)", r.err);

    /* A caller whose output goes nowhere (a socket whose reader is gone). */
    step = "lies: caller gone";
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        exit(99);
    close(sv[1]);
    struct qerr e2;
    int st = -1;
    agent_deadline(&v.c, 5000);
    t0 = now_ms();
    rc = agent_exec(&v.c, "user", "echo lost", -1, sv[0], -1, &st, &e2);
    took = now_ms() - t0;
    close(sv[0]);
    ok(took < 3000 && (rc == 0 || !strstr(e2.msg, "did not answer")),
       "lies: output to a caller gone does not hold the request up (%ld ms, rc %d %s)", took,
       rc, rc < 0 ? e2.msg : "");

    /* Half a frame: the channel stalls; deadlines end what waits. */
    step = "lies: half";
    exec_req(&v.c, "half", 2000, &r);
    ok(r.rc < 0 && strstr(r.err, "did not answer within 2 s") && r.took >= 1900 &&
           r.took < 5000,
       "lies: a frame left half-written: the request ends at its deadline (%ld ms): %s",
       r.took, r.err);
    exec_req(&v.c, "echo stalled", 1500, &r);
    ok(r.rc < 0 && strstr(r.err, "did not answer within") && r.took < 4500,
       "lies: the channel is stalled behind it, and the next request ends at its deadline too "
       "(%ld ms)", r.took);
    ok(alive(v.daemon), "lies: the daemon still runs");

    /* One waiting without a deadline when the channel ends. */
    step = "lies: end";
    struct bg b = exec_bg(&v, "echo pending", 0, -1);
    usleep(300000);
    end_vm(&v);
    bg_result(b, 5000, &r);
    ok(r.rc < 0 && strstr(r.err, "channel closed"),
       "lies: a request under way when the channel ends fails at once: %s", r.err);
}

/* ---- flood ---- */

/* qrexecd_spawn's second word: the agent answered (the socket takes
 * callers at once), it never does (the wait ends at its deadline), or
 * the daemon ends first (the wait ends then, not at the deadline). */
static void answered(void)
{
    struct vm v;
    struct qerr err = { 0, "" };
    char prog[PATH_MAX];
    snprintf(prog, sizeof prog, "%s/qrexec-daemon", bindir);
    setenv("QUBES_QREXEC_DAEMON", prog, 1);

    step = "answered: a good agent";
    start_agent(&v, "answers", "lies");
    int fd = -1;
    int rc = qrexecd_spawn(v.name, NULL, -1, &fd, &err);
    ok(rc == 0 && fd >= 0, "answered: the daemon started, with a line back (%s)", err.msg);
    long t0 = now_ms();
    rc = rc < 0 ? rc : qrexecd_wait_answer(v.name, fd, 10000, &err);
    long took = now_ms() - t0;
    ok(rc == 0, "answered: the wait ends when the agent answered (%ld ms) %s", took,
       rc < 0 ? err.msg : "");
    daemon_pid = -1;
    int c = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s", v.sock);
    int conn = connect(c, (struct sockaddr *)&addr, sizeof addr);
    ok(conn == 0, "answered: and the daemon's socket takes a caller at once, without a retry%s%s",
       conn < 0 ? ": " : "", conn < 0 ? strerror(errno) : "");
    close(c);
    qclose(&fd);
    stop_agent(&v);
    while (waitpid(-1, NULL, 0) > 0)
        ;                       /* the daemon, our child, ends with the channel */

    step = "answered: a mute agent";
    start_agent(&v, "mute", "mute");
    rc = qrexecd_spawn(v.name, NULL, -1, &fd, &err);
    t0 = now_ms();
    rc = rc < 0 ? rc : qrexecd_wait_answer(v.name, fd, 1000, &err);
    took = now_ms() - t0;
    ok(rc < 0 && strstr(err.msg, "mute: its agent did not answer within 1 s"),
       "answered: an agent that never answers: an error at the deadline (%s)", err.msg);
    ok(took >= 1000 && took < 5000, "answered: after 1 s, not before and not long after "
       "(%ld ms)", took);

    step = "answered: the daemon ends first";
    int ws = -1;
    t0 = now_ms();
    stop_agent(&v);             /* the channel's end: the daemon goes */
    rc = qrexecd_wait_answer(v.name, fd, 20000, &err);
    took = now_ms() - t0;
    ok(rc < 0 && strstr(err.msg, "mute: its qrexec daemon ended before its agent answered"),
       "answered: a daemon that ends first ends the wait, saying so (%s)", err.msg);
    ok(took < 5000, "answered: at once, not at the 20 s deadline (%ld ms)", took);
    qclose(&fd);
    pid_t p;
    while ((p = waitpid(-1, &ws, 0)) > 0)
        ok(WIFEXITED(ws), "answered: the daemon %d exited (status %d)", (int)p,
           WIFEXITED(ws) ? WEXITSTATUS(ws) : -1);
    ok(log_has(&v, "channel closed"), "answered: its log says the channel closed");
    unsetenv("QUBES_QREXEC_DAEMON");
}

static void flood(void)
{
    struct vm v;
    struct res r, h;
    char line[256];
    step = "flood: start";
    ok(start_vm(&v, "flooder", "flood") == 0, "flood: the daemon answers");
    long base = proc_kb(v.daemon, "VmRSS");

    /* A second session, open all along. */
    step = "flood: hold";
    struct bg held = exec_bg(&v, "hold", 30000, -1);
    ok(expect_line(&v, "held ", 5000, line, sizeof line), "flood: a session waits (%s)", line);

    /* The flood's output goes to a pipe read late: the caller stops
     * reading, the daemon's buffer fills, and the sender's credit runs
     * out long before its 16 MiB do. */
    step = "flood: flood";
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        exit(99);
    struct bg fl = exec_bg(&v, "flood", 30000, p[1]);
    close(p[1]);
    ok(wait_log(&v, "beyond the credit", 10000),
       "flood: the daemon logs the data beyond the credit");
    size_t got = 0;
    char buf[65536];
    ssize_t n;
    struct pollfd pf = { p[0], POLLIN, 0 };
    while (poll(&pf, 1, 10000) == 1 && (n = read(p[0], buf, sizeof buf)) > 0)
        got += (size_t)n;
    close(p[0]);
    bg_result(fl, 10000, &r);
    ok(r.rc < 0 && strstr(r.err, "credit"),
       "flood: the flooded session ends with an error about credit: %s", r.err);
    ok(got < (1u << 20), "flood: the caller got %zu bytes of the 16 MiB, not all", got);
    ok(expect_line(&v, "close ", 5000, NULL, 0), "flood: the daemon sent CLOSE for it");

    bg_result(held, 20000, &h);
    ok(h.rc == 0 && h.status == 0 && strcmp(h.out, "held-ok") == 0,
       "flood: the other session, answered after the flood, completes (rc %d out '%s' %s)",
       h.rc, h.out, h.err);
    long hwm = proc_kb(v.daemon, "VmHWM");
    /* A daemon that kept what it cannot hand on would hold the flood. */
    ok(alive(v.daemon) && base > 0 && hwm > 0 && hwm - base < 16 * 1024,
       "flood: the daemon runs, its memory bounded by less than the flood (RSS %ld kB before, "
       "peak %ld kB)", base, hwm);

    step = "flood: echo";
    exec_req(&v.c, "echo after", 5000, &r);
    ok(r.rc == 0 && strcmp(r.out, "after") == 0, "flood: and a new request works (%s)", r.err);
    end_vm(&v);
}

/* ---- oversized ---- */

/* A request right after a reset may find the channel not ready yet. */
static void exec_retry(struct agent_conn *c, const char *cmd, struct res *r)
{
    long end = now_ms() + 3000;
    do
        exec_req(c, cmd, 3000, r);
    while (r->rc < 0 && strstr(r->err, "not ready") && now_ms() < end && !usleep(50000));
}

static void oversized(void)
{
    struct vm v;
    struct res r, h;
    step = "oversized: start";
    ok(start_vm(&v, "giant", "oversized") == 0, "oversized: the daemon answers");
    struct bg held = exec_bg(&v, "hold", 10000, -1);
    ok(expect_line(&v, "held ", 5000, NULL, 0), "oversized: a session waits");

    step = "oversized: frame";
    exec_req(&v.c, "oversized", 5000, &r);
    ok(r.rc < 0 && strstr(r.err, "out of step") && r.took < 5000,
       "oversized: a frame over QAG_MAX_PAYLOAD ends the request (%ld ms): %s", r.took, r.err);
    bg_result(held, 5000, &h);
    ok(h.rc < 0 && strstr(h.err, "out of step") && h.took < 5000,
       "oversized: and every other session (%ld ms): %s", h.took, h.err);
    ok(log_has(&v, "out of step") && log_has(&v, "length 65537"),
       "oversized: the daemon logs it went out of step");

    step = "oversized: resync";
    exec_retry(&v.c, "echo again", &r);
    ok(r.rc == 0 && r.status == 0 && strcmp(r.out, "again") == 0,
       "oversized: after a new HELLO the channel works again (%s)", r.err);

    step = "oversized: badmagic";
    exec_req(&v.c, "badmagic", 5000, &r);
    ok(r.rc < 0 && strstr(r.err, "out of step"), "oversized: so does a wrong magic: %s", r.err);
    exec_retry(&v.c, "echo third", &r);
    ok(r.rc == 0 && strcmp(r.out, "third") == 0, "oversized: and the channel comes back (%s)",
       r.err);
    ok(alive(v.daemon), "oversized: the daemon still runs");
    end_vm(&v);
}

/* ---- unknown ---- */

static void unknown(void)
{
    struct vm v;
    struct res r;
    step = "unknown: start";
    ok(start_vm(&v, "junky", "unknown") == 0,
       "unknown: the daemon answers (junk came right after the handshake)");
    step = "unknown: junk";
    exec_req(&v.c, "junk fine", 5000, &r);
    ok(r.rc == 0 && r.status == 0 && strcmp(r.out, "fine") == 0,
       "unknown: unknown types and frames of sessions that do not exist are ignored, the "
       "session completes (rc %d out '%s' %s)", r.rc, r.out, r.err);
    ok(log_has(&v, "frame type 99 on open session") && log_has(&v, "request type 99"),
       "unknown: the daemon logs the unknown types");
    exec_req(&v.c, "echo next", 5000, &r);
    ok(r.rc == 0 && strcmp(r.out, "next") == 0, "unknown: the next request works (%s)", r.err);
    ok(alive(v.daemon), "unknown: the daemon still runs");
    end_vm(&v);
}

/* ---- calls ---- */

static int count(const char *text, const char *what)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, what)); p += strlen(what))
        n++;
    return n;
}

static void write_file(const char *dir, const char *name, const char *text, mode_t mode)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (spit(path, text) < 0 || chmod(path, mode) < 0) {
        fprintf(stderr, "test_agent: cannot write %s\n", path);
        exit(99);
    }
}

static void calls(void)
{
    static const char *bad[] = { "slash", "dotdot-target", "dotdot-service", "long-service",
                                 "long-target", "no-nul", "empty", "extra-source",
                                 "no-such-vm", "no-policy" };
    const int nbad = (int)(sizeof bad / sizeof bad[0]);
    char pol[PATH_MAX], rpc[PATH_MAX], marks[PATH_MAX], cmd[PATH_MAX * 2], script[PATH_MAX * 2];
    struct qerr err;
    snprintf(pol, sizeof pol, "%s/policy", top);
    snprintf(rpc, sizeof rpc, "%s/rpc", top);
    snprintf(marks, sizeof marks, "%s/marks", top);
    if (qmkdirs(pol, &err) < 0 || qmkdirs(rpc, &err) < 0 || qmkdirs(marks, &err) < 0)
        exit(99);
    /* Allowed only for a source that is not the VM, or a target that
     * does not exist; and the one call that is allowed. */
    write_file(pol, "qubes.Ok", "caller dom0 allow\n", 0644);
    write_file(pol, "qubes.Extra", "dom0 dom0 allow\n", 0644);
    write_file(pol, "qubes.Any", "$anyvm $anyvm allow\n", 0644);
    snprintf(script, sizeof script,
             "#!/bin/sh\necho \"$QREXEC_REMOTE_DOMAIN\" > '%s'/\"$QREXEC_SERVICE_FULL_NAME\"\n"
             "echo fine\n", marks);
    static const char *svcs[] = { "qubes.Ok", "qubes.Extra", "qubes.Any", "qubes.NoPolicy", "sh" };
    for (size_t i = 0; i < sizeof svcs / sizeof svcs[0]; i++)
        write_file(rpc, svcs[i], script, 0755);
    setenv("QUBES_RPC_POLICY_DIR", pol, 1);
    setenv("QUBES_RPC_DIR", rpc, 1);
    snprintf(cmd, sizeof cmd, "'%s/qvm-create' -q -l red --net -s work", bindir);
    if (system(cmd) != 0) {
        fprintf(stderr, "test_agent: %s failed\n", cmd);
        exit(99);
    }

    struct vm v;
    struct res r;
    step = "calls: start";
    ok(start_vm(&v, "caller", "calls") == 0, "calls: the daemon answers");
    long base = proc_kb(v.daemon, "VmRSS");
    step = "calls: answers";
    ok(expect_line(&v, "calls done", 30000, NULL, 0), "calls: every CALL got an answer");
    const char *seen = v.seen;
    for (int i = 0; i < nbad; i++) {
        char want[128], ran[128];
        snprintf(want, sizeof want, "call %s error ", bad[i]);
        snprintf(ran, sizeof ran, "call %s exit", bad[i]);
        ok(strstr(seen, want) && !strstr(seen, ran), "calls: %s is refused (ERROR)", bad[i]);
    }
    ok(strstr(seen, "call ok stdout fine\n") && strstr(seen, "call ok exit 0\n"),
       "calls: the one the policy allows runs in dom0 and exits 0");
    ok(count(seen, "call many error ") == 200, "calls: 200 at once, each refused (%d)",
       count(seen, "call many error "));
    ok(!strstr(seen, "call host-sid"), "calls: a CALL on a host session id gets no answer");
    ok(log_has(&v, "not the peer's range"), "calls: and is logged");

    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/qubes.Ok", marks);
    char *who = slurp(path, NULL);
    ok(who && strcmp(who, "caller\n") == 0, "calls: the allowed one ran, told its source is "
       "the VM (%s)", who ? who : "(did not run)");
    free(who);
    int others = 0;
    for (size_t i = 1; i < sizeof svcs / sizeof svcs[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", marks, svcs[i]);
        others += access(path, F_OK) == 0;
    }
    ok(others == 0, "calls: nothing else ran (%d services did)", others);

    snprintf(path, sizeof path, "%s/%s", run, QRT_POLICY_LOG);
    char *plog = slurp(path, NULL);
    if (!plog)
        plog = strdup("");
    int lines = count(plog, "\n"), denies = count(plog, " action=deny");
    int ours = count(plog, " source=caller ");
    ok(lines > 0 && ours == lines, "calls: every line of the policy log has source=caller "
       "(%d of %d)", ours, lines);
    ok(denies == nbad + 200, "calls: a deny line in the policy log per refused call (%d)",
       denies);
    diag("policy log: %d lines, %d deny", lines, denies);
    ok(count(plog, "action=allow") == 1 && strstr(plog, "service=qubes.Ok action=allow"),
       "calls: and the only allow is the call that ran");
    ok(strstr(plog, "service=qubes.Extra action=deny") != NULL,
       "calls: extra fields claiming another source: decided for the VM, denied");
    ok(count(plog, "target=(malformed)") == 7, "calls: the 7 malformed ones logged as such (%d)",
       count(plog, "target=(malformed)"));
    free(plog);

    long hwm = proc_kb(v.daemon, "VmHWM");
    ok(alive(v.daemon) && base > 0 && hwm > 0 && hwm - base < 16 * 1024,
       "calls: the daemon runs, its memory bounded (RSS %ld kB before, peak %ld kB)", base, hwm);
    exec_req(&v.c, "echo host", 5000, &r);
    ok(r.rc == 0 && strcmp(r.out, "host") == 0, "calls: dom0's requests still work (%s)",
       r.err);
    end_vm(&v);
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: test_agent HOSTILE-AGENT [BINDIR]\n");
        return 2;
    }
    helper = argv[1];
    bindir = argc == 3 ? argv[2] : getenv("QUBES_TEST_BIN");
    if (!bindir) {
        fprintf(stderr, "test_agent: no BINDIR and no QUBES_TEST_BIN\n");
        return 2;
    }
    const char *tmp = getenv("SCRATCH") ? getenv("SCRATCH") : getenv("TMPDIR");
    snprintf(top, sizeof top, "%s/agent.XXXXXX", tmp ? tmp : "/tmp");
    if (!mkdtemp(top))
        return 99;
    char base[PATH_MAX + 8];
    snprintf(run, sizeof run, "%s/run", top);
    snprintf(base, sizeof base, "%s/base", top);
    struct qerr err;
    if (qmkdirs(run, &err) < 0 || qmkdirs(base, &err) < 0)
        return 99;
    setenv("QUBES_RUN_DIR", run, 1);
    setenv("QUBES_BASE_DIR", base, 1);
    setenv("QUBES_VMM_URI", "test:///default", 1);
    unsetenv("QUBES_RPC_ASSUME_YES");
    unsetenv("QUBES_OFFLINE");
    signal(SIGPIPE, SIG_IGN);
    signal(SIGALRM, on_alarm);

    alarm(90);
    lies();
    alarm(60);
    flood();
    alarm(60);
    oversized();
    alarm(60);
    unknown();
    alarm(90);
    calls();
    alarm(60);
    answered();
    alarm(0);

    rm_scratch(top);
    return done_testing();
}
