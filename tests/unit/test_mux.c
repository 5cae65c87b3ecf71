/* The session multiplexer (qrexec/mux.h) end to end over a socketpair: a
 * guest-role mux in a child process runs commands by /bin/sh, the
 * host-role mux here opens sessions on it. Many at once, each with its
 * own output and status; end of file both ways; megabytes both ways at
 * once; a reader that never reads stalls only its own session; a session
 * cancelled has its process killed; junk on the channel before the
 * handshake is skipped. */
#include "../../qrexec/mux.h"
#include "../tap.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[4096];

/* ---- the guest side ---- */

static void guest_request(struct qmux *m, uint32_t sid, uint32_t type, const char *p,
                          uint32_t len, void *ctx)
{
    (void)ctx;
    size_t ul = strnlen(p, len);
    if (type != QAG_EXEC || ul >= len) {
        qmux_refuse(m, sid, "only EXEC here");
        return;
    }
    int in[2], out[2], err[2];
    if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) {
        qmux_refuse(m, sid, "pipe");
        return;
    }
    pid_t pid = fork();
    if (pid == 0) {
        setsid();
        dup2(in[0], 0);
        dup2(out[1], 1);
        dup2(err[1], 2);
        execl("/bin/sh", "sh", "-c", p + ul + 1, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    close(err[1]);
    qmux_serve(m, sid, in[1], out[0], err[0], pid);
}

static const struct qmux_ops guest_ops = { .request = guest_request };

static pid_t start_guest(int chan, const char *junk)
{
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGPIPE, SIG_IGN);
        if (junk)               /* what a restored guest's buffers may hold */
            (void)!write(chan, junk, strlen(junk));
        struct qmux *m = qmux_new(chan, QMUX_GUEST, &guest_ops, NULL);
        qmux_run(m);
        _exit(0);
    }
    return pid;
}

/* ---- the host side ---- */

struct call {
    int status;
    char error[128];
    bool over;
    uint32_t sid;
};
static int pending;

static void host_ended(struct qmux *m, void *sctx, int status, const char *error)
{
    struct call *c = sctx;
    c->status = status;
    snprintf(c->error, sizeof c->error, "%s", error ? error : "");
    c->over = true;
    if (--pending == 0)
        qmux_stop(m);
}

static void host_ready(struct qmux *m, void *ctx)
{
    (void)ctx;
    qmux_stop(m);
}

static char logged[4096];
static void host_log(void *ctx, const char *msg)
{
    (void)ctx;
    snprintf(logged + strlen(logged), sizeof logged - strlen(logged), "%s\n", msg);
}

static const struct qmux_ops host_ops = { .ended = host_ended, .ready = host_ready,
                                          .log = host_log };

static uint32_t exec(struct qmux *m, const char *cmd, int in, int out, int err, struct call *c)
{
    char req[4096];
    int n = snprintf(req, sizeof req, "root%c%s", 0, cmd);
    memset(c, 0, sizeof *c);
    c->sid = qmux_call(m, QAG_EXEC, req, (uint32_t)n, in, out, err, c);
    pending += c->sid != 0;
    return c->sid;
}

static int file(const char *name, int flags)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return open(path, flags | O_CLOEXEC, 0600);
}

static char *slurp(const char *name, size_t *len)
{
    int fd = file(name, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0)
        return NULL;
    char *b = malloc((size_t)st.st_size + 1);
    ssize_t r = read(fd, b, (size_t)st.st_size);
    close(fd);
    b[r < 0 ? 0 : r] = '\0';
    if (len)
        *len = r < 0 ? 0 : (size_t)r;
    return b;
}

/* Runs the host loop until every call has ended (an alarm bounds it). */
static void run(struct qmux *m)
{
    alarm(60);
    qmux_run(m);
    alarm(0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    snprintf(dir, sizeof dir, "%s/mux.XXXXXX", getenv("SCRATCH") ? getenv("SCRATCH") : "/tmp");
    if (!mkdtemp(dir))
        return 1;
    int sp[2];
    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp);
    pid_t guest = start_guest(sp[1], "QAG2 leftovers of an earlier channel \x01\x02");
    close(sp[1]);
    struct qmux *m = qmux_new(sp[0], QMUX_HOST, &host_ops, NULL);
    alarm(20);
    qmux_run(m);
    ok(qmux_ready(m), "handshake completes past the junk before it");

    /* Eight at once, each with its own output and status, overlapping. */
    struct call c[8];
    for (int i = 0; i < 8; i++) {
        char cmd[256], name[32];
        snprintf(cmd, sizeof cmd, "date +%%s%%N; sleep 1; echo out %d; echo err %d >&2; "
                 "date +%%s%%N; exit %d", i, i, i);
        snprintf(name, sizeof name, "out%d", i);
        int o = file(name, O_WRONLY | O_CREAT | O_TRUNC);
        snprintf(name, sizeof name, "err%d", i);
        int e = file(name, O_WRONLY | O_CREAT | O_TRUNC);
        exec(m, cmd, -1, o, e, &c[i]);
    }
    run(m);
    long long last_start = 0, first_end = 0;
    int right = 0;
    for (int i = 0; i < 8; i++) {
        char name[32], want[32];
        snprintf(name, sizeof name, "out%d", i);
        char *o = slurp(name, NULL);
        snprintf(name, sizeof name, "err%d", i);
        char *e = slurp(name, NULL);
        long long t0 = 0, t1 = 0;
        char word[8];
        int k = -1;
        if (o && sscanf(o, "%lld %7s %d %lld", &t0, word, &k, &t1) == 4 && k == i) {
            snprintf(want, sizeof want, "err %d\n", i);
            right += c[i].over && c[i].status == i && e && strcmp(e, want) == 0;
        }
        if (t0 > last_start)
            last_start = t0;
        if (!first_end || t1 < first_end)
            first_end = t1;
        free(o);
        free(e);
    }
    ok(right == 8, "8 sessions at once: each its own stdout, stderr and status (%d right)", right);
    ok(last_start && last_start < first_end,
       "they ran at the same time: the last began before the first ended");

    /* End of file reaches the service; 10 KiB through cat and back. */
    int in = file("in10k", O_RDWR | O_CREAT | O_TRUNC);
    for (int i = 0; i < 10240; i++)
        (void)!write(in, &"0123456789abcdef"[i % 16], 1);
    lseek(in, 0, SEEK_SET);
    exec(m, "cat; echo end", in, file("out10k", O_WRONLY | O_CREAT | O_TRUNC), -1, &c[0]);
    run(m);
    size_t len = 0;
    char *o = slurp("out10k", &len);
    ok(c[0].status == 0 && len == 10240 + 4 && memcmp(o + 10240, "end\n", 4) == 0,
       "10 KiB through cat: all of it, then the service saw end of input (%zu bytes)", len);
    free(o);

    /* Megabytes both ways at once. */
    in = file("in8m", O_RDWR | O_CREAT | O_TRUNC);
    static char block[65536];
    for (size_t i = 0; i < sizeof block; i++)
        block[i] = (char)(i * 7);
    for (int i = 0; i < 128; i++)
        (void)!write(in, block, sizeof block);
    lseek(in, 0, SEEK_SET);
    exec(m, "head -c 8388608 /dev/zero & cat >/dev/null; wait", in,
         file("out8m", O_WRONLY | O_CREAT | O_TRUNC), -1, &c[0]);
    exec(m, "cat", file("in8m", O_RDONLY), file("cat8m", O_WRONLY | O_CREAT | O_TRUNC), -1,
         &c[1]);
    run(m);
    char *a = slurp("in8m", &len), *b = slurp("cat8m", NULL);
    size_t zl = 0;
    free(slurp("out8m", &zl));
    ok(c[0].status == 0 && zl == 8388608, "8 MiB out while 8 MiB goes in: no deadlock (%zu)",
       zl);
    ok(c[1].status == 0 && a && b && memcmp(a, b, len) == 0 && len == 8388608,
       "8 MiB through cat comes back equal");
    free(a);
    free(b);

    /* A reader that never reads: its session stalls, another goes on, the
     * host holds no more than the window for it. */
    int stuck[2];
    pipe2(stuck, O_CLOEXEC);
    struct call slow, quick;
    exec(m, "yes", -1, stuck[1], -1, &slow);
    exec(m, "echo quick", -1, file("quick", O_WRONLY | O_CREAT | O_TRUNC), -1, &quick);
    pending--;                  /* only the quick one is waited for */
    run(m);
    char *q = slurp("quick", NULL);
    ok(quick.over && q && strcmp(q, "quick\n") == 0, "a stalled session does not stall another");
    free(q);
    ok(qmux_queued(m) < 2 * QAG_WINDOW, "nothing piles up toward the stalled reader (%zu queued)",
       qmux_queued(m));
    qmux_cancel(m, slow.sid);
    close(stuck[0]);
    ok(!slow.over && qmux_sessions(m) == 0, "a cancelled session is gone at once");

    /* The guest killed the cancelled one's process: a new session sees no `yes`. */
    exec(m, "sleep 0.3; ps -e -o stat=,comm= | awk '$1 !~ /^Z/ && $2 == \"yes\"' | wc -l", -1,
         file("ps", O_WRONLY | O_CREAT | O_TRUNC), -1, &c[0]);
    run(m);
    q = slurp("ps", NULL);
    ok(q && atoi(q) == 0, "the cancelled session's process was killed (%s)", q ? q : "?");
    free(q);

    /* A refused request ends with the guest's reason. */
    memset(&c[0], 0, sizeof c[0]);
    c[0].sid = qmux_call(m, QAG_SHUTDOWN, NULL, 0, -1, -1, -1, &c[0]);
    pending++;
    run(m);
    ok(c[0].over && c[0].status == -1 && strstr(c[0].error, "only EXEC"),
       "a refused request ends with the peer's reason (%s)", c[0].error);

    qmux_free(m);
    kill(guest, SIGKILL);
    waitpid(guest, NULL, 0);
    return done_testing();
}
