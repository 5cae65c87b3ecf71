/* DispVMs against a cold start and against the other ways to a running
 * guest, side by side in one run on one test guest (a template HVM of
 * GUEST-DIR): a cold start with a command, a command on the running VM,
 * libvirt's own save and restore, DispVMs on demand (shared memory, full
 * image, through a FIFO), preloaded DispVMs, 16 requests at once, our CPU
 * per DispVM (a cgroup of everything the bench starts), where a request's
 * time goes (--timings), and a summary beside the targets. Prints
 * figures only. With BENCH_NETWORK=1 every VM and DispVM sits behind a
 * NetVM guest, started first.
 * Usage: bench_dispvm TOOLS-DIR GUEST-DIR [RUNS]   (RUNS default 10; every
 * DispVM figure is a median of at least 10 requests) */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"

#define BURST 16                /* requests at once */
#define HELD 5                  /* DispVMs running at once for their memory */
#define FILL 4                  /* preloads made on their own for their CPU */
#define FILL_PAIRS 3            /* plain savefile and fill pairs, for their median */
#define REQUEST_S 300           /* a request's deadline */
#define TEARDOWN_S 10           /* how long a teardown is followed */

static struct bench_env E;
static int runs;                /* VM figures */
static int druns;               /* DispVM figures: at least 10 */
static const char *uri;

/* ---- qubes.xml and the run directory ---- */

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, len = 0, r;
    char *text = malloc(cap);
    while (text && (r = fread(text + len, 1, cap - 1 - len, f)) > 0) {
        len += r;
        if (len + 1 == cap) {
            char *bigger = realloc(text, cap *= 2);
            if (!bigger)
                free(text);
            text = bigger;
        }
    }
    fclose(f);
    if (text)
        text[len] = '\0';
    return text;
}

/* DispVM records in qubes.xml: all (with_preloads) or those that are not
 * waiting preloads; only the one called `name` when given. */
static int dispvm_records(bool with_preloads, const char *name)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/qubes.xml", E.dir);
    char *text = read_file(path);
    int count = 0;
    for (char *p = text; p && (p = strstr(p, "<QubesDisposableVm ")); p++) {
        char *end = strchr(p, '>');
        if (!end)
            break;
        *end = '\0';
        char want[80];
        snprintf(want, sizeof want, " name=\"%s\"", name ? name : "");
        if ((with_preloads || !strstr(p, "preload=\"True\"")) && (!name || strstr(p, want)))
            count++;
        *end = '>';
    }
    free(text);
    return count;
}

static bool domain_paused(const char *name)
{
    /* libvirt's status file on the local system daemon: no call to it. */
    if (strcmp(uri, "qemu:///system") == 0) {
        char path[300], head[2048] = "";
        snprintf(path, sizeof path, "/run/libvirt/qemu/%s.xml", name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            ssize_t n = read(fd, head, sizeof head - 1);
            close(fd);
            head[n > 0 ? n : 0] = '\0';
            return strstr(head, "<domstatus state='paused'") != NULL;
        }
    }
    char out[128];
    char *argv[] = { "virsh", "-c", (char *)uri, "domstate", (char *)name, NULL };
    return bench_exec(BENCH_PATH | BENCH_MAY_FAIL | BENCH_OUTSIDE, argv, NULL, out, sizeof out,
                      NULL, NULL) == 0 &&
           strncmp(out, "paused", 6) == 0;
}

/* Waiting preloads: DispVMs whose domain is paused and whose run directory
 * has qrexec.sock (one being restored is briefly paused without it). */
static int parked(void)
{
    char vms[200];
    snprintf(vms, sizeof vms, "%s/vms", E.run);
    DIR *d = opendir(vms);
    struct dirent *e;
    int n = 0;
    while (d && (e = readdir(d))) {
        char sock[600];
        snprintf(sock, sizeof sock, "%s/%s/qrexec.sock", vms, e->d_name);
        if (strncmp(e->d_name, "disp", 4) == 0 && access(sock, F_OK) == 0 &&
            domain_paused(e->d_name))
            n++;
    }
    if (d)
        closedir(d);
    return n;
}

static void wait_parked(int n, double max_s)
{
    for (double end = bench_now() + max_s; parked() < n;) {
        if (bench_now() > end)
            bench_die("%d preloaded DispVM(s) did not wait within %.0f s (%d do)", n, max_s,
                      parked());
        bench_msleep(20);
    }
}

/* Before a timed request: a preload waits (when `preloaded`), the last
 * replacement's worker and qrexec-daemon are done with it (they go on a
 * moment after it is seen parked: its CPU is its own, not the request's),
 * and the last DispVM's end in libvirt and QEMU is over (an idle machine). */
static void before_request(bool preloaded)
{
    if (preloaded) {
        wait_parked(1, 120);
        bench_cg_settle(2);
    }
    bench_machine_settle(2);
}

static void prefs(const char *prop, const char *value)
{
    char *argv[] = { "qubes-prefs", "-s", (char *)prop, (char *)value, NULL };
    bench_run(argv);
}

/* No DispVM record left, preloads included (with dispvm-preload 0). The
 * service looks at dispvm-preload every second, and DispVMs take a while
 * to go; should one still be there after 3 s, the setting is written
 * again (said: a service that missed it). */
static void wait_no_dispvm(double max_s)
{
    double now = bench_now(), end = now + max_s, nudge = now + 3;
    while (dispvm_records(true, NULL) > 0) {
        now = bench_now();
        if (now > end)
            bench_die("DispVM records still in qubes.xml after %.0f s", max_s);
        if (now > nudge) {
            bench_say("%d DispVM(s) still there after dispvm-preload 0: writing it again",
                      dispvm_records(true, NULL));
            prefs("dispvm-preload", "0");
            nudge = bench_now() + 3;
        }
        bench_msleep(20);
    }
}

/* The proportional memory of our DispVMs' QEMUs (a guest=dispN whose run
 * directory is ours), KiB; *seen gets how many. */
static long dispvm_pss(int *seen)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    long total = 0;
    *seen = 0;
    while (d && (e = readdir(d))) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        char path[300], buf[8192];
        snprintf(path, sizeof path, "/proc/%s/cmdline", e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
        if (fd >= 0)
            close(fd);
        if (n <= 0)
            continue;
        for (ssize_t i = 0; i < n; i++)
            if (!buf[i])
                buf[i] = ' ';
        buf[n] = '\0';
        char *g = strstr(buf, "guest=disp"), name[32], dir[300];
        if (!g || sscanf(g + 6, "%31[^, ]", name) != 1)
            continue;
        snprintf(dir, sizeof dir, "%s/vms/%s", E.run, name);
        if (access(dir, F_OK) != 0)
            continue;
        snprintf(path, sizeof path, "/proc/%s/smaps_rollup", e->d_name);
        FILE *f = fopen(path, "r");
        long pss = -1;
        while (f && pss < 0 && fgets(buf, sizeof buf, f))
            if (sscanf(buf, "Pss: %ld kB", &pss) != 1)
                pss = -1;
        if (f)
            fclose(f);
        if (pss >= 0) {
            total += pss;
            (*seen)++;
        }
    }
    if (d)
        closedir(d);
    return total;
}

/* ---- a teardown, followed ---- */

/* From the DispVM's output: until its run directory is gone (QEMU killed,
 * files removed) and until its record is gone from qubes.xml. Events from
 * inotify (the run directories' parent; qubes.xml, replaced by a rename),
 * each checked against the files: exact, and no polling. */
struct follow {
    int fd;                     /* inotify; -1: none, checked every 0.5 ms */
    char name[64];              /* the DispVM, once its output names it */
    double from;                /* its output */
    double killed, dropped;     /* since `from`; -1: not yet */
};

static void follow_open(struct follow *f)
{
    char vms[200];
    snprintf(vms, sizeof vms, "%s/vms", E.run);
    memset(f, 0, sizeof *f);
    f->killed = f->dropped = -1;
    f->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (f->fd >= 0 && (inotify_add_watch(f->fd, vms, IN_DELETE | IN_MOVED_FROM) < 0 ||
                       inotify_add_watch(f->fd, E.dir, IN_MOVED_TO | IN_CLOSE_WRITE) < 0)) {
        close(f->fd);
        f->fd = -1;
    }
}

static void follow_check(struct follow *f, double now)
{
    if (!f->name[0])
        return;
    char dir[300];
    snprintf(dir, sizeof dir, "%s/vms/%s", E.run, f->name);
    if (f->killed < 0 && access(dir, F_OK) != 0)
        f->killed = now - f->from;
    if (f->dropped < 0 && dispvm_records(true, f->name) == 0)
        f->dropped = now - f->from;
}

static bool follow_done(const struct follow *f)
{
    return f->killed >= 0 && f->dropped >= 0;
}

static void follow_close(struct follow *f)
{
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
}

/* ---- requests ---- */

/* One qfile-daemon-dvm, its output and exit watched. Times absolute. */
struct job {
    pid_t pid;
    int pidfd, out, err;        /* -1 once closed */
    int go;                     /* held until job_go (-1: gone) */
    double t0, t_out, t_exit;   /* start, first complete line, exit; -1: not yet */
    int status;
    char buf[1024];
    size_t len;
    char line[64];              /* the first line */
    char *errs;                 /* its stderr */
    size_t nerr, caperr;
};

/* Prepares a request for the test guest's DispVM with `script` as the
 * service's input; `feed` for QUBES_DISPVM_FEED (NULL: unset): its process
 * waits in the cgroup until job_go starts its clock and lets it run. */
static void job_ready(struct job *j, const char *feed, bool timings, const char *script)
{
    char path[4096];
    bench_tool_path("qfile-daemon-dvm", path, sizeof path);
    char *argv[10];
    int a = 0;
    argv[a++] = "qfile-daemon-dvm";
    argv[a++] = "-q";
    if (timings)
        argv[a++] = "--timings";
    argv[a++] = "-t";
    argv[a++] = E.tpl;
    argv[a++] = "qubes.VMShell";
    argv[a++] = "dom0";
    argv[a++] = "DEFAULT";
    argv[a] = NULL;
    int in[2], out[2], err[2];
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0)
        bench_die("pipe: %s", strerror(errno));
    memset(j, 0, sizeof *j);
    j->t_out = j->t_exit = -1;
    j->pid = bench_fork_held(false, &j->go);
    if (j->pid == 0) {
        if (feed)
            setenv("QUBES_DISPVM_FEED", feed, 1);
        dup2(in[0], 0);
        dup2(out[1], 1);
        dup2(err[1], 2);
        execv(path, argv);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    close(err[1]);
    /* Short scripts: the pipe takes them before the request runs. */
    if (write(in[1], script, strlen(script)) < 0 && errno != EPIPE)
        bench_die("writing a request's input: %s", strerror(errno));
    close(in[1]);
    j->out = out[0];
    j->err = err[0];
    fcntl(j->out, F_SETFL, O_NONBLOCK);
    fcntl(j->err, F_SETFL, O_NONBLOCK);
    j->pidfd = (int)syscall(SYS_pidfd_open, j->pid, 0);
}

static void job_go(struct job *j)
{
    j->t0 = bench_now();
    bench_release(j->go);
    j->go = -1;
}

static void job_start(struct job *j, const char *feed, bool timings, const char *script)
{
    job_ready(j, feed, timings, script);
    job_go(j);
}

static bool job_done(const struct job *j)
{
    return j->out < 0 && j->err < 0 && j->t_exit >= 0;
}

static void job_reaped(struct job *j, int st, double now)
{
    j->t_exit = now;
    j->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if (j->pidfd >= 0)
        close(j->pidfd);
    j->pidfd = -1;
}

static void job_free(struct job *j)
{
    if (j->t_exit < 0) {        /* not reaped yet: its pid is still its own */
        kill(j->pid, SIGTERM);
        int st;
        waitpid(j->pid, &st, 0);
    }
    int *fds[] = { &j->pidfd, &j->out, &j->err };
    for (int i = 0; i < 3; i++)
        if (*fds[i] >= 0)
            close(*fds[i]);
    free(j->errs);
    j->errs = NULL;
}

static void job_read(struct job *j, int *fd, double now, struct follow *f)
{
    char tmp[4096];
    ssize_t r = read(*fd, tmp, sizeof tmp);
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (r <= 0) {
        close(*fd);
        *fd = -1;
        return;
    }
    if (fd == &j->err) {
        if (j->nerr + (size_t)r + 1 > j->caperr) {
            j->caperr = (j->nerr + (size_t)r + 1) * 2;
            if (!(j->errs = realloc(j->errs, j->caperr)))
                bench_die("out of memory");
        }
        memcpy(j->errs + j->nerr, tmp, (size_t)r);
        j->nerr += (size_t)r;
        j->errs[j->nerr] = '\0';
        return;
    }
    size_t room = sizeof j->buf - 1 - j->len, n = (size_t)r < room ? (size_t)r : room;
    memcpy(j->buf + j->len, tmp, n);
    j->len += n;
    j->buf[j->len] = '\0';
    char *nl = strchr(j->buf, '\n');
    if (j->t_out < 0 && nl) {
        j->t_out = now;
        snprintf(j->line, sizeof j->line, "%.*s", (int)(nl - j->buf), j->buf);
        if (f) {
            snprintf(f->name, sizeof f->name, "%s", j->line);
            f->from = now;
            follow_check(f, now);
        }
    }
}

/* One round of events for `n` jobs (and a teardown followed for the
 * first): waits at most `wait_ms`. */
static void job_events(struct job *jobs, int n, struct follow *f, double wait_ms)
{
    struct pollfd p[3 * BURST + 1];
    int *fds[3 * BURST + 1];
    struct job *owner[3 * BURST + 1];
    int np = 0;
    for (int i = 0; i < n; i++) {
        int *mine[] = { &jobs[i].pidfd, &jobs[i].out, &jobs[i].err };
        for (int k = 0; k < 3; k++)
            if (*mine[k] >= 0) {
                p[np] = (struct pollfd){ *mine[k], POLLIN, 0 };
                fds[np] = mine[k];
                owner[np++] = &jobs[i];
            }
    }
    if (f && f->fd >= 0)
        p[np++] = (struct pollfd){ f->fd, POLLIN, 0 };
    if (f && f->fd < 0 && f->name[0] && wait_ms > 0.5)
        wait_ms = 0.5;
    struct timespec ts = { (time_t)(wait_ms / 1e3),
                           (long)((wait_ms - (time_t)(wait_ms / 1e3) * 1e3) * 1e6) };
    int r = ppoll(p, (nfds_t)np, &ts, NULL);
    double now = bench_now();
    if (r < 0 && errno != EINTR)
        bench_die("poll: %s", strerror(errno));
    for (int i = 0; r > 0 && i < np; i++) {
        if (!p[i].revents)
            continue;
        if (f && p[i].fd == f->fd) {
            char ev[4096] __attribute__((aligned(8)));
            while (read(f->fd, ev, sizeof ev) > 0)
                ;
            continue;
        }
        struct job *j = owner[i];
        if (fds[i] == &j->pidfd) {
            int st;
            if (waitpid(j->pid, &st, WNOHANG) == j->pid)
                job_reaped(j, st, now);
        } else {
            job_read(j, fds[i], now, f && j == &jobs[0] ? f : NULL);
        }
    }
    for (int i = 0; i < n; i++) {
        struct job *j = &jobs[i];
        int st;
        /* Without pidfds: the exit once its pipes closed. */
        if (j->pidfd < 0 && j->t_exit < 0 && j->out < 0 && j->err < 0 &&
            waitpid(j->pid, &st, 0) == j->pid)
            job_reaped(j, st, bench_now());
    }
    if (f)
        follow_check(f, now);
}

static void job_fail(const struct job *j, const char *what)
{
    bench_die("%s: qfile-daemon-dvm %s (status %d, output \"%s\")%s%s", what,
              j->t_exit < 0 ? "did not end" : "failed", j->status, j->line,
              j->nerr ? ": " : "", j->errs ? j->errs : "");
}

struct req {
    double out, exit, killed, dropped;  /* seconds; killed, dropped from the output */
    char name[64];
};

/* One request (`uname -n`), its teardown followed; the timing lines go to
 * *errs (malloc'ed) when asked. */
static void request(const char *feed, bool timings, struct req *r, char **errs)
{
    struct follow f;
    struct job j;
    follow_open(&f);
    job_start(&j, feed, timings, "uname -n\n");
    for (;;) {
        double now = bench_now();
        if (job_done(&j) && (follow_done(&f) || now > j.t_out + TEARDOWN_S))
            break;
        if (now > j.t0 + REQUEST_S)
            job_fail(&j, "a request");
        job_events(&j, 1, &f, 100);
    }
    if (j.status != 0 || strncmp(j.line, "disp", 4) != 0)
        job_fail(&j, "a request");
    r->out = j.t_out - j.t0;
    r->exit = j.t_exit - j.t0;
    r->killed = f.killed;
    r->dropped = f.dropped;
    snprintf(r->name, sizeof r->name, "%s", j.line);
    if (errs) {
        *errs = j.errs;
        j.errs = NULL;
    }
    follow_close(&f);
    job_free(&j);
}

/* ---- figures ---- */

/* The median of the values >= 0 (a teardown not seen is -1); *n: how many. */
static double median_seen(const double *v, int count, int *n)
{
    double *ok = calloc((size_t)count, sizeof *ok);
    *n = 0;
    for (int i = 0; ok && i < count; i++)
        if (v[i] >= 0)
            ok[(*n)++] = v[i];
    double m = *n ? bench_median(ok, *n) : -1;
    free(ok);
    return m;
}

/* One way to a DispVM: RUNS requests. */
struct path {
    const char *label;
    double make;                /* qvm-create-default-dvm, s */
    long long savefile;         /* bytes, -1: not this path's */
    double out, exit, killed, dropped;      /* medians, s */
    double dropped_exit;        /* median of the record gone after the exit, s */
    int n_killed, n_dropped;    /* teardowns seen */
    double cpu;                 /* ours per request, s */
    double cpu_own;             /* of which from its start until its record is gone, s
                                   (the mean: the rest is its replacement's) */
    double own_med, own_min, own_max;   /* the same per request */
    long pss;                   /* KiB per DispVM with HELD running, -1: not measured */
};

static long long savefile_size(void)
{
    char path[4200];
    struct stat st;
    snprintf(path, sizeof path, "%s/dvmdata/%s-dvm.savefile", E.dir, E.tpl);
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

static double make_savefile(void)
{
    char *argv[] = { "qvm-create-default-dvm", "-q", E.tpl, NULL };
    return bench_run(argv);
}

/* The DispVM service of our run directory, started (it returns once it
 * listens; nothing when it runs): no request of a batch pays its start. */
static void service_up(void)
{
    char *argv[] = { "qubes-dvmd", NULL };
    bench_run(argv);
}

/* `druns` requests; before each, a preload waits when `preloaded`. */
static void requests(struct path *p, const char *feed, bool preloaded)
{
    double *out = calloc((size_t)druns, sizeof *out), *ex = calloc((size_t)druns, sizeof *ex);
    double *kl = calloc((size_t)druns, sizeof *kl), *dr = calloc((size_t)druns, sizeof *dr);
    double *dx = calloc((size_t)druns, sizeof *dx), *ownv = calloc((size_t)druns, sizeof *ownv);
    service_up();
    if (preloaded)
        wait_parked(1, 120);
    bench_cg_settle(10);
    double cpu0 = bench_our_cpu(), own = 0;
    for (int i = 0; i < druns; i++) {
        before_request(preloaded);
        struct req r;
        double c = bench_our_cpu();
        request(feed, false, &r, NULL);
        /* A preloaded request's replacement starts as its DispVM goes:
         * the window ends once the record is gone. */
        ownv[i] = bench_our_cpu() - c;
        own += ownv[i];
        out[i] = r.out;
        ex[i] = r.exit;
        kl[i] = r.killed;
        dr[i] = r.dropped;
        dx[i] = r.dropped < 0 ? -1 : r.out + r.dropped - r.exit;
    }
    /* The last request's replacement counts like the others'. */
    if (preloaded)
        wait_parked(1, 120);
    bench_cg_settle(10);
    p->cpu = (bench_our_cpu() - cpu0) / druns;
    p->cpu_own = own / druns;
    p->own_med = bench_median(ownv, druns);     /* sorts ownv */
    p->own_min = ownv[0];
    p->own_max = ownv[druns - 1];
    free(ownv);
    p->out = bench_median(out, druns);
    p->exit = bench_median(ex, druns);
    p->killed = median_seen(kl, druns, &p->n_killed);
    p->dropped = median_seen(dr, druns, &p->n_dropped);
    int seen;
    p->dropped_exit = median_seen(dx, druns, &seen);
    free(dx);
    free(out);
    free(ex);
    free(kl);
    free(dr);
}

/* PSS per DispVM with HELD running their service at once (KiB). */
static long pss_of_running(void)
{
    struct job j[HELD];
    for (int i = 0; i < HELD; i++)
        job_start(&j[i], NULL, false, "echo up; sleep 600\n");
    for (int up = 0; up < HELD;) {
        up = 0;
        for (int i = 0; i < HELD; i++) {
            if (j[i].t_exit >= 0 || (j[i].t_out < 0 && bench_now() > j[i].t0 + REQUEST_S))
                job_fail(&j[i], "a DispVM held for its memory");
            up += j[i].t_out >= 0;
        }
        if (up < HELD)
            job_events(j, HELD, NULL, 1000);
    }
    bench_msleep(2000);     /* all up and running their service: measure now */
    int seen;
    long total = dispvm_pss(&seen);
    for (int i = 0; i < HELD; i++)
        kill(j[i].pid, SIGTERM);    /* the service ends; the DispVM goes */
    for (double end = bench_now() + 60;;) {
        bool all = true;
        for (int i = 0; i < HELD; i++)
            all = all && job_done(&j[i]);
        if (all || bench_now() > end)
            break;
        job_events(j, HELD, NULL, 1000);
    }
    for (int i = 0; i < HELD; i++)
        job_free(&j[i]);
    wait_no_dispvm(60);
    return seen == HELD ? total / seen : -1;
}

/* ---- 16 at once ---- */

/* CPU time, in seconds, of every libvirtd and virtlogd (what they reaped
 * of their helpers included): libvirt's part of a window. */
static double libvirt_cpu(void)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    double tick = (double)sysconf(_SC_CLK_TCK), s = 0;
    while (d && (e = readdir(d))) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        char path[64], buf[1024];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
        if (f)
            fclose(f);
        buf[n] = '\0';
        char *open = strchr(buf, '('), *close = strrchr(buf, ')');
        if (!open || !close || close < open)
            continue;
        *close = '\0';
        if (strcmp(open + 1, "libvirtd") != 0 && strcmp(open + 1, "virtlogd") != 0)
            continue;
        unsigned long long ut, st, cut, cst;
        /* After the name: state, then 10 fields before utime. */
        if (sscanf(close + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %llu %llu",
                   &ut, &st, &cut, &cst) == 4)
            s += (double)(ut + st + cut + cst) / tick;
    }
    if (d)
        closedir(d);
    return s;
}

struct burst {
    const char *label;
    bool ok;
    char why[512];
    double last_out, last_exit;     /* from the first start, s */
    double floor_out, floor_exit;   /* CPU of the machine in those windows / cores, s */
    double cpu_out, cpu_libvirt, cpu_ours;  /* to the last output: all, libvirt's, ours, s */
    double one;                     /* the single request it is compared with */
    const char *one_says;
};

static void burst(struct burst *b, bool preloaded)
{
    struct job j[BURST];
    int cores;
    double tick = (double)sysconf(_SC_CLK_TCK);
    pid_t prefs_pid = -1;
    service_up();
    bench_cg_settle(10);
    bench_machine_settle(10);
    /* All 16 wait in the cgroup; then they go together. */
    for (int i = 0; i < BURST; i++)
        job_ready(&j[i], NULL, false, "uname -n\n");
    double libvirt0 = libvirt_cpu(), ours0 = bench_our_cpu();
    unsigned long long busy0 = bench_busy_ticks(&cores);
    double t0 = bench_now();
    for (int i = 0; i < BURST; i++)
        job_go(&j[i]);
    bool all_out = false;
    for (;;) {
        int outs = 0, exits = 0;
        for (int i = 0; i < BURST; i++) {
            outs += j[i].t_out >= 0 || j[i].t_exit >= 0;
            exits += j[i].t_exit >= 0;
            if (j[i].t_exit < 0 && bench_now() > j[i].t0 + REQUEST_S)
                job_fail(&j[i], "16 at once");
        }
        if (outs == BURST && !all_out) {
            all_out = true;
            b->cpu_out = (double)(bench_busy_ticks(&cores) - busy0) / tick;
            b->cpu_libvirt = libvirt_cpu() - libvirt0;
            b->cpu_ours = bench_our_cpu() - ours0;
            b->floor_out = b->cpu_out / cores;
            /* No replacements once all have their output. */
            if (preloaded) {
                char path[4096];
                bench_tool_path("qubes-prefs", path, sizeof path);
                if ((prefs_pid = fork()) == 0) {
                    bench_cg_enter();
                    int null = open("/dev/null", O_RDWR);
                    dup2(null, 1);
                    dup2(null, 2);
                    execl(path, "qubes-prefs", "-s", "dispvm-preload", "0", (char *)NULL);
                    _exit(127);
                }
            }
        }
        if (exits == BURST) {
            b->floor_exit = (double)(bench_busy_ticks(&cores) - busy0) / tick / cores;
            break;
        }
        job_events(j, BURST, NULL, 1000);
    }
    /* Their stderr closes once their workers are done. */
    for (double end = bench_now() + 120;;) {
        bool all = true;
        for (int i = 0; i < BURST; i++)
            all = all && job_done(&j[i]);
        if (all || bench_now() > end)
            break;
        job_events(j, BURST, NULL, 1000);
    }
    b->last_out = b->last_exit = 0;
    for (int i = 0; i < BURST; i++) {
        if (j[i].t_out - t0 > b->last_out)
            b->last_out = j[i].t_out - t0;
        if (j[i].t_exit - t0 > b->last_exit)
            b->last_exit = j[i].t_exit - t0;
    }
    /* 16 distinct names, all exit 0. */
    b->ok = true;
    b->why[0] = '\0';
    for (int i = 0; i < BURST; i++) {
        bool dup = false;
        for (int k = 0; k < i; k++)
            dup = dup || strcmp(j[i].line, j[k].line) == 0;
        if (j[i].status != 0 || strncmp(j[i].line, "disp", 4) != 0 || dup) {
            b->ok = false;
            size_t l = strlen(b->why);
            snprintf(b->why + l, sizeof b->why - l, "%s#%d: status %d, output \"%s\"%s",
                     l ? "; " : "", i + 1, j[i].status, j[i].line, dup ? " (twice)" : "");
        }
    }
    if (!b->ok)
        for (int i = 0; i < BURST; i++)
            if (j[i].nerr)
                bench_say("16 at once, request %d: %s", i + 1, j[i].errs);
    for (int i = 0; i < BURST; i++)
        job_free(&j[i]);
    if (prefs_pid > 0) {
        int st;
        waitpid(prefs_pid, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            bench_die("qubes-prefs -s dispvm-preload 0 failed");
    }
    wait_no_dispvm(300);
}

/* ---- where the time goes ---- */

#define MAX_STEPS 64

struct step {
    char step[48], who[32];
    double *wall, *cpu, *faults;    /* per run in which it appeared */
    int n;
};

struct timings {
    const char *label;
    struct step s[MAX_STEPS];
    int nsteps;
    double *client;             /* per run: the sum of the client's steps, ms */
    double out, exit;           /* the requests' medians */
};

#define CLIENT "qfile-daemon-dvm"

/* "timing: STEP  <wall> ms wall <cpu> ms cpu <n> faults  WHO" lines of
 * one run. */
static void timings_add(struct timings *t, const char *text, int run)
{
    t->client[run] = 0;
    for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        const char *eol = strchr(l, '\n'), *w = strstr(l, " ms wall ");
        if (strncmp(l, "timing: ", 8) != 0 || !w || (eol && w > eol))
            continue;
        const char *num = w;
        while (num > l + 8 && num[-1] != ' ')
            num--;
        const char *end = num;
        while (end > l + 8 && end[-1] == ' ')
            end--;
        char *after;
        double wall = strtod(num, NULL), cpu = strtod(w + 9, &after);
        if (strncmp(after, " ms cpu", 7) != 0)
            continue;
        double flt = strtod(after + 7, &after);
        if (strncmp(after, " faults", 7) != 0)
            continue;
        after += 7;
        while (*after == ' ')
            after++;
        char step[48], who[32];
        snprintf(step, sizeof step, "%.*s", (int)(end - (l + 8)), l + 8);
        snprintf(who, sizeof who, "%.*s", (int)((eol ? eol : after + strlen(after)) - after),
                 after);
        int k = 0;
        while (k < t->nsteps && (strcmp(t->s[k].step, step) != 0 || strcmp(t->s[k].who, who) != 0))
            k++;
        if (k == t->nsteps) {
            if (k == MAX_STEPS)
                continue;
            struct step *s = &t->s[t->nsteps++];
            snprintf(s->step, sizeof s->step, "%s", step);
            snprintf(s->who, sizeof s->who, "%s", who);
            s->wall = calloc((size_t)druns * 2, sizeof *s->wall);
            s->cpu = calloc((size_t)druns * 2, sizeof *s->cpu);
            s->faults = calloc((size_t)druns * 2, sizeof *s->faults);
            if (!s->wall || !s->cpu || !s->faults)
                bench_die("out of memory");
        }
        struct step *s = &t->s[k];
        if (s->n < druns * 2) {     /* a step may come more than once in a run */
            s->wall[s->n] = wall;
            s->faults[s->n] = flt;
            s->cpu[s->n++] = cpu;
        }
        if (strcmp(who, CLIENT) == 0)
            t->client[run] += wall;
    }
}

static void timed_requests(struct timings *t, bool preloaded)
{
    double *out = calloc((size_t)druns, sizeof *out), *ex = calloc((size_t)druns, sizeof *ex);
    t->client = calloc((size_t)druns, sizeof *t->client);
    service_up();
    for (int i = 0; i < druns; i++) {
        before_request(preloaded);
        struct req r;
        char *errs = NULL;
        request(NULL, true, &r, &errs);
        out[i] = r.out;
        ex[i] = r.exit;
        timings_add(t, errs, i);
        free(errs);
    }
    t->out = bench_median(out, druns);
    t->exit = bench_median(ex, druns);
    free(out);
    free(ex);
}

/* ---- the figures, side by side ---- */

static struct {
    char mem[32];
    /* 1 */
    double cold, cold_min, cold_max, start, echo_after, kill;
    /* 2 */
    double echo, shell, echo_cpu, shell_cpu;
    double echo_b2b;            /* 'echo hi' back to back, no idle between runs */
    /* 3 */
    double save, restore, restore_min, restore_max, destroy;
    long long save_size;
    /* 4, 5, 6 */
    struct path demand, full, fifo, pre;
    long pre_parked_pss;
    double pre_echo;            /* qvm-run --dispvm -p 'echo hi' on a preload, to its exit */
    /* 8: a preload on its own */
    double plain_cpu[FILL_PAIRS], fill_cpu[FILL_PAIRS], pair[FILL_PAIRS], per_preload;
    double plain_wall[FILL_PAIRS], fill_wall[FILL_PAIRS];
    /* 7 */
    struct burst b_demand, b_pre;
    /* 9 */
    struct timings t_demand, t_pre;
} R;

static void cold_start(void)
{
    double *cold = calloc((size_t)runs, sizeof *cold), *start = calloc((size_t)runs, sizeof *start);
    double *echo = calloc((size_t)runs, sizeof *echo), *kill_t = calloc((size_t)runs, sizeof *kill_t);
    char *up[] = { "qvm-start", "-q", E.tpl, NULL };
    char *hi[] = { "qvm-run", "-p", E.tpl, "echo hi", NULL };
    char *down[] = { "qvm-kill", E.tpl, NULL };
    for (int i = 0; i < runs; i++) {
        char out[256];
        /* Like each DispVM request: from an idle machine (the last
         * kill's end in libvirt over), the bench's forks not counted. */
        bench_machine_settle(5);
        start[i] = bench_run(up);
        bench_exec(0, hi, NULL, out, sizeof out, &echo[i], NULL);
        cold[i] = start[i] + echo[i];
        if (strcmp(out, "hi\n") != 0)
            bench_die("qvm-run -p %s 'echo hi' printed \"%s\"", E.tpl, out);
        kill_t[i] = bench_run(down);
    }
    R.cold = bench_median(cold, runs);
    R.cold_min = cold[0];
    R.cold_max = cold[runs - 1];
    R.start = bench_median(start, runs);
    R.echo_after = bench_median(echo, runs);
    R.kill = bench_median(kill_t, runs);
    free(cold);
    free(start);
    free(echo);
    free(kill_t);
}

static void running_vm(void)
{
    double *echo = calloc((size_t)runs, sizeof *echo), *shell = calloc((size_t)runs, sizeof *shell);
    char *up[] = { "qvm-start", "-q", E.tpl, NULL };
    char *hi[] = { "qvm-run", "-p", E.tpl, "echo hi", NULL };
    char *sh[] = { "qvm-run", "-p", "--service", "qubes.VMShell", E.tpl, NULL };
    char out[256], want[64];
    snprintf(want, sizeof want, "%s\n", E.tpl);
    bench_run(up);
    /* The reference is the running VM's steady state: its boot's tail
     * over, and what the commands run translated by its QEMU once (two
     * runs of each, not counted), as in a VM that has been running. */
    bench_machine_settle(10);
    for (int i = 0; i < 2; i++) {
        bench_exec(0, hi, NULL, NULL, 0, NULL, NULL);
        bench_exec(0, sh, "uname -n\n", NULL, 0, NULL, NULL);
    }
    bench_machine_settle(10);
    bench_cg_settle(10);
    double c0 = bench_our_cpu();
    /* Each run, like each DispVM request, starts on an idle machine. */
    for (int i = 0; i < runs; i++) {
        bench_machine_settle(2);
        bench_exec(0, hi, NULL, out, sizeof out, &echo[i], NULL);
        if (strcmp(out, "hi\n") != 0)
            bench_die("qvm-run -p %s 'echo hi' printed \"%s\"", E.tpl, out);
    }
    bench_cg_settle(10);
    double c1 = bench_our_cpu();
    for (int i = 0; i < runs; i++) {
        bench_machine_settle(2);
        bench_exec(0, sh, "uname -n\n", out, sizeof out, &shell[i], NULL);
        if (strcmp(out, want) != 0)
            bench_die("qvm-run -p --service qubes.VMShell %s printed \"%s\"", E.tpl, out);
    }
    bench_cg_settle(10);
    R.echo_cpu = (c1 - c0) / runs;
    R.shell_cpu = (bench_our_cpu() - c1) / runs;
    /* And back to back: the running VM at its fastest, the machine busy. */
    double *b2b = calloc((size_t)runs, sizeof *b2b);
    for (int i = 0; i < runs; i++)
        bench_exec(0, hi, NULL, NULL, 0, &b2b[i], NULL);
    R.echo_b2b = bench_median(b2b, runs);
    free(b2b);
    R.echo = bench_median(echo, runs);
    R.shell = bench_median(shell, runs);
    free(echo);
    free(shell);
}

/* libvirt's own savefile of the running test guest, restored again and
 * again: what a libvirt user has without us. */
static void virsh_restore(void)
{
    double *restore = calloc((size_t)runs, sizeof *restore);
    double *destroy = calloc((size_t)runs, sizeof *destroy);
    char file[200];
    snprintf(file, sizeof file, "%s/virsh.save", E.dir);
    char *save[] = { "virsh", "-q", "-c", (char *)uri, "save", E.tpl, file, NULL };
    char *rest[] = { "virsh", "-q", "-c", (char *)uri, "restore", file, NULL };
    char *destr[] = { "virsh", "-q", "-c", (char *)uri, "destroy", E.tpl, NULL };
    char *kill_argv[] = { "qvm-kill", E.tpl, NULL };
    bench_exec(BENCH_PATH, save, NULL, NULL, 0, &R.save, NULL);
    struct stat st;
    R.save_size = stat(file, &st) == 0 ? (long long)st.st_size : -1;
    for (int i = 0; i < runs; i++) {
        bench_exec(BENCH_PATH, rest, NULL, NULL, 0, &restore[i], NULL);
        /* The last one through qvm-kill: it also removes the guest's
         * firewall chains, which a save leaves. */
        if (i < runs - 1)
            bench_exec(BENCH_PATH, destr, NULL, NULL, 0, &destroy[i], NULL);
        else
            bench_run(kill_argv);
    }
    unlink(file);
    R.restore = bench_median(restore, runs);
    R.restore_min = restore[0];
    R.restore_max = restore[runs - 1];
    R.destroy = runs > 1 ? bench_median(destroy, runs - 1) : -1;
    free(restore);
    free(destroy);
}

static void on_demand(void)
{
    R.demand.label = "on demand, shared memory";
    prefs("dispvm-memory", "shared");
    R.demand.make = make_savefile();
    R.demand.savefile = savefile_size();
    requests(&R.demand, NULL, false);
    R.demand.pss = pss_of_running();
}

static void full_image(void)
{
    R.full.label = "full image, copied clone";
    R.fifo.label = "full image, clone via a FIFO";
    prefs("dispvm-memory", "full");
    R.full.make = make_savefile();
    R.full.savefile = savefile_size();
    R.fifo.make = -1;
    R.fifo.savefile = -1;
    requests(&R.full, NULL, false);
    requests(&R.fifo, "fifo", false);
    R.full.pss = pss_of_running();
    R.fifo.pss = -1;
    /* Back to shared memory: its savefile set again (not measured). */
    prefs("dispvm-memory", "shared");
    make_savefile();
}

/* The CPU of preloads made on their own, each by a new worker (a claimed
 * preload's replacement is made by its worker, already running): a fill
 * of FILL preloads against the plain savefile made just before, in FILL_PAIRS pairs (a savefile's
 * own CPU varies by tens of ms from one to the next). Each pair starts
 * with a new service: one that has made preloads of T keeps a pool of it,
 * and would start preloading from the old savefile as soon as it saw
 * dispvm-preload go up, before the fill. For the same reason T is not
 * the default template meanwhile: the service keeps the default
 * template's pool whenever dispvm-preload is above 0. */
static void preload_cost(void)
{
    char *stop[] = { "qubes-dvmd", "--stop", NULL };
    char n[8];
    snprintf(n, sizeof n, "%d", FILL);
    prefs("default-template", "none");
    for (int i = 0; i < FILL_PAIRS; i++) {
        prefs("dispvm-preload", "0");
        bench_run(stop);
        wait_no_dispvm(60);
        service_up();
        bench_cg_settle(10);
        double c0 = bench_our_cpu();
        R.plain_wall[i] = make_savefile();
        bench_cg_settle(10);
        double c1 = bench_our_cpu();
        prefs("dispvm-preload", n);
        bench_msleep(1500);     /* the service has seen it: it must not preload by itself */
        if (dispvm_records(true, NULL) > 0)
            bench_say("warning: the service preloaded before the fill: the CPU of a preload "
                      "on its own is too high");
        bench_cg_settle(10);
        double c2 = bench_our_cpu();
        R.fill_wall[i] = make_savefile();
        wait_parked(FILL, 120);
        bench_cg_settle(10);
        double c3 = bench_our_cpu();
        R.plain_cpu[i] = c1 - c0;
        R.fill_cpu[i] = c3 - c2;
        R.pair[i] = (R.fill_cpu[i] - R.plain_cpu[i]) / FILL;
    }
    prefs("default-template", E.tpl);
    double per[FILL_PAIRS];
    memcpy(per, R.pair, sizeof per);
    R.per_preload = bench_median(per, FILL_PAIRS);
}

static void preloaded(void)
{
    R.pre.label = "preloaded (shared memory)";
    prefs("dispvm-preload", "1");
    R.pre.make = make_savefile();
    R.pre.savefile = -1;
    wait_parked(1, 120);
    for (double end = bench_now() + 60; dispvm_records(true, NULL) > 1 && bench_now() < end;)
        bench_msleep(20);       /* the fill's extra preloads go */
    bench_msleep(500);
    int seen;
    R.pre_parked_pss = dispvm_pss(&seen);
    if (seen != 1)
        R.pre_parked_pss = -1;
    requests(&R.pre, NULL, true);
    R.pre.pss = -1;
    /* Like for like with 2.: the same command, a preload instead of a
     * running VM, until the exit as there. */
    double *echo = calloc((size_t)druns, sizeof *echo);
    char tpl[64], out[256];
    snprintf(tpl, sizeof tpl, "--dispvm=%s", E.tpl);
    char *hi[] = { "qvm-run", tpl, "-p", "echo hi", NULL };
    for (int i = 0; i < druns; i++) {
        before_request(true);
        bench_exec(0, hi, NULL, out, sizeof out, &echo[i], NULL);
        if (strcmp(out, "hi\n") != 0)
            bench_die("qvm-run %s -p 'echo hi' printed \"%s\"", tpl, out);
    }
    R.pre_echo = bench_median(echo, druns);
    free(echo);
}

static void bursts(void)
{
    R.b_demand.label = "(a) on demand (dispvm-preload 0)";
    R.b_pre.label = "(b) preloaded (a pool of 16 filled)";
    prefs("dispvm-preload", "0");
    wait_no_dispvm(120);
    burst(&R.b_demand, false);
    R.b_demand.one = R.demand.out;
    R.b_demand.one_says = "4.";
    /* The pool filled by qvm-create-default-dvm from a service that starts
     * with it: a running one would start preloading from the old savefile
     * as soon as it sees the new setting. */
    char *stop[] = { "qubes-dvmd", "--stop", NULL };
    bench_run(stop);
    char n[8];
    snprintf(n, sizeof n, "%d", BURST);
    prefs("dispvm-preload", n);
    make_savefile();
    wait_parked(BURST, 300);
    burst(&R.b_pre, true);
    R.b_pre.one = R.pre.out;
    R.b_pre.one_says = "6.";
}

/* ---- printing ---- */

static void ms(char *buf, size_t len, double s)
{
    if (s < 0)
        snprintf(buf, len, "n/a");
    else if (s < 0.1)
        snprintf(buf, len, "%.1f ms", s * 1e3);
    else
        snprintf(buf, len, "%.0f ms", s * 1e3);
}

static void print_vm(void)
{
    printf("\n1. Cold start + echo: qvm-start -q T, then qvm-run -p T 'echo hi' (wall of both), "
           "%d runs\n", runs);
    printf("   median %.0f ms (min %.0f, max %.0f): qvm-start %.0f ms + qvm-run %.0f ms (medians)\n",
           R.cold * 1e3, R.cold_min * 1e3, R.cold_max * 1e3, R.start * 1e3, R.echo_after * 1e3);
    printf("   qvm-kill T between runs: median %.0f ms\n", R.kill * 1e3);
    printf("\n2. On the running VM, %d runs each (medians; our CPU per call)\n", runs);
    printf("   %-52s %8.1f ms   our CPU %5.1f ms\n", "qvm-run -p T 'echo hi'", R.echo * 1e3,
           R.echo_cpu * 1e3);
    printf("   %-52s %8.1f ms   our CPU %5.1f ms\n",
           "qvm-run -p --service qubes.VMShell T <<< 'uname -n'", R.shell * 1e3,
           R.shell_cpu * 1e3);
    printf("   (the second is a DispVM request's workload, like for like; each run starts on an "
           "idle machine,\n   as each DispVM request does)\n");
    printf("   %-52s %8.1f ms\n", "qvm-run -p T 'echo hi', back to back (no idle)",
           R.echo_b2b * 1e3);
    printf("\n3. Reference without us: libvirt's savefile of the running guest (virsh save, "
           "%.0f MiB, %.1f s)\n", R.save_size / 1048576.0, R.save);
    printf("   virsh -c %s restore FILE: median %.0f ms (min %.0f, max %.0f), %d runs\n", uri,
           R.restore * 1e3, R.restore_min * 1e3, R.restore_max * 1e3, runs);
    printf("   (the wall of the command: it includes virsh's own start and connection)\n");
    if (R.destroy >= 0)
        printf("   virsh destroy T after each: median %.0f ms\n", R.destroy * 1e3);
}

static void print_paths(void)
{
    printf("\n4.-6. DispVMs: qfile-daemon-dvm -q -t T qubes.VMShell dom0 DEFAULT <<< 'uname -n', "
           "%d requests each (medians)\n", druns);
    printf("   output: from the request to its complete output (the name line); exit: to the "
           "request's exit;\n   teardown, from the output: until the DispVM's run dir is gone, "
           "and until its record is gone\n   from qubes.xml; PSS: per running DispVM with %d "
           "running\n", HELD);
    printf("     %-30s %9s %9s %9s %6s %9s %9s %9s %8s\n", "", "savefile", "output", "exit",
           "/cold", "dir gone", "rec gone", "our CPU", "PSS");
    const struct { const char *no; const struct path *p; } rows[] = {
        { "4.", &R.demand }, { "5.", &R.full }, { "  ", &R.fifo }, { "6.", &R.pre },
    };
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        const struct path *p = rows[i].p;
        char size[32] = "-", pss[32] = "-", o[16], e[16], k[16], d[16], c[16];
        if (p->savefile > 0)
            snprintf(size, sizeof size, "%lld KiB", p->savefile >> 10);
        if (p->pss > 0)
            snprintf(pss, sizeof pss, "%ld MiB", p->pss >> 10);
        ms(o, sizeof o, p->out);
        ms(e, sizeof e, p->exit);
        ms(k, sizeof k, p->killed);
        ms(d, sizeof d, p->dropped);
        snprintf(c, sizeof c, "%.1f ms", p->cpu * 1e3);
        printf("  %s %-30s %9s %9s %9s %6.3f %9s %9s %9s %8s\n", rows[i].no, p->label, size, o, e,
               p->out / R.cold, k, d, c, pss);
        if (p->n_killed < druns || p->n_dropped < druns)
            printf("     (teardown seen within %d s in %d and %d of %d requests)\n", TEARDOWN_S,
                   p->n_killed, p->n_dropped, druns);
    }
    printf("   /cold: the output's median against 1. (cold start + echo, %.0f ms)\n", R.cold * 1e3);
    printf("   savefiles made (qvm-create-default-dvm) in %.1f s (shared memory), %.1f s (full "
           "image),\n   %.1f s (shared, with 1 preload filled)\n", R.demand.make, R.full.make,
           R.pre.make);
    printf("   5. against 4.: output %.2f, savefile %.0f, PSS %.2f (full image / shared memory)\n",
           R.full.out / R.demand.out, (double)R.full.savefile / (double)R.demand.savefile,
           R.demand.pss > 0 && R.full.pss > 0 ? (double)R.full.pss / (double)R.demand.pss : -1);
    printf("   6. preloaded, before each request a preload waits (paused, qrexec.sock); output\n"
           "      against 2.: %.1f (qvm-run 'echo hi'), %.1f (qvm-run VMShell 'uname -n'); "
           "against 1.: %.3f\n", R.pre.out / R.echo, R.pre.out / R.shell, R.pre.out / R.cold);
    printf("      like for like with 2.: qvm-run --dispvm=T -p 'echo hi' on a preload, to its exit:\n"
           "      %.1f ms, %.1f against qvm-run -p T 'echo hi' (%d runs, median)\n",
           R.pre_echo * 1e3, R.pre_echo / R.echo, druns);
    char gone[16];
    ms(gone, sizeof gone, R.pre.dropped_exit);
    printf("      a claimed preload's record is gone %s after the request's exit (median)\n", gone);
    if (R.pre_parked_pss > 0)
        printf("      a parked preload's PSS (paused): %ld MiB\n", R.pre_parked_pss >> 10);
}

static void print_bursts(void)
{
    int cores;
    bench_busy_ticks(&cores);
    printf("\n7. %d requests at once (each 'uname -n'; 16 distinct DispVM names, all exit 0), "
           "from the\n   first start; floor: the CPU time of all processes on the machine in "
           "that window\n   (/proc/stat) over its %d cores, the wall if it were CPU-bound\n",
           BURST, cores);
    printf("     %-36s %9s %9s %8s %9s %6s %9s %6s\n", "", "last out", "last exit", "/one",
           "floor", "wall/", "floor", "wall/");
    printf("     %-36s %9s %9s %8s %9s %6s %9s %6s\n", "", "", "", "request", "to out",
           "floor", "to exit", "floor");
    const struct burst *b[] = { &R.b_demand, &R.b_pre };
    for (int i = 0; i < 2; i++) {
        char one[24];
        snprintf(one, sizeof one, "%.1f (%s)", b[i]->last_out / b[i]->one, b[i]->one_says);
        printf("     %-36s %7.2f s %7.2f s %8s %7.2f s %6.2f %7.2f s %6.2f\n", b[i]->label,
               b[i]->last_out, b[i]->last_exit, one, b[i]->floor_out,
               b[i]->last_out / b[i]->floor_out, b[i]->floor_exit,
               b[i]->last_exit / b[i]->floor_exit);
        if (!b[i]->ok)
            printf("         FAILED (the figures above do not count): %s\n", b[i]->why);
    }
    printf("   /one request: the last output against one request's output median (4. or 6.); "
           "(b): dispvm-preload\n   was set to 0 once all had their output, so some "
           "replacements may have started\n");
    printf("   where the floor goes: the CPU to the last output per request, by whom (libvirt: "
           "libvirtd and virtlogd,\n   with the helpers they reaped; ours: the cgroup of 8.; "
           "QEMU and the rest: what remains)\n");
    for (int i = 0; i < 2; i++) {
        double all = b[i]->cpu_out / BURST * 1e3, lv = b[i]->cpu_libvirt / BURST * 1e3,
               ours = b[i]->cpu_ours / BURST * 1e3;
        printf("     %-36s %6.1f ms: libvirt %5.1f, ours %4.1f, QEMU and the rest %5.1f\n",
               b[i]->label, all, lv, ours, all - lv - ours);
    }
}

static void print_cpu(void)
{
    printf("\n8. Our CPU per request (%s)\n", bench_cg_on() ? "the cgroup's usage" :
           "RUSAGE_CHILDREN");
    printf("   %s\n", bench_cg_says("   "));
    printf("   %-46s %7.1f ms\n", "4. on demand, shared memory", R.demand.cpu * 1e3);
    printf("   %-46s %7.1f ms\n", "5. full image, copied clone", R.full.cpu * 1e3);
    printf("   %-46s %7.1f ms\n", "5. full image, clone via a FIFO", R.fifo.cpu * 1e3);
    printf("   6. per preloaded request: %.1f ms in all: the request itself (from its start until "
           "its\n      record is gone) %.1f ms, its replacement (made by the claimed preload's "
           "worker,\n      from then until it waits) %.1f ms (means); the request itself, per "
           "request:\n      median %.1f ms, min %.1f, max %.1f\n", R.pre.cpu * 1e3,
           R.pre.cpu_own * 1e3, (R.pre.cpu - R.pre.cpu_own) * 1e3, R.pre.own_med * 1e3,
           R.pre.own_min * 1e3, R.pre.own_max * 1e3);
    printf("   a preload made by a new worker: (our CPU across qvm-create-default-dvm filling %d "
           "preloads,\n   with dispvm-preload %d, - across a plain one with dispvm-preload 0 "
           "made just before) / %d,\n   the median of %d pairs: %.1f ms\n", FILL, FILL, FILL,
           FILL_PAIRS, R.per_preload * 1e3);
    for (int i = 0; i < FILL_PAIRS; i++)
        printf("     pair %d: (%.1f ms (%.1f s) - %.1f ms (%.1f s)) / %d = %.1f ms\n", i + 1,
               R.fill_cpu[i] * 1e3, R.fill_wall[i], R.plain_cpu[i] * 1e3, R.plain_wall[i], FILL,
               R.pair[i] * 1e3);
}

/* The median of n values, the values left in their order. */
static double median_of(const double *v, int n)
{
    double *c = calloc((size_t)n, sizeof *c);
    if (!c)
        bench_die("out of memory");
    memcpy(c, v, (size_t)n * sizeof *c);
    double m = bench_median(c, n);
    free(c);
    return m;
}

static void print_timings(const struct timings *t)
{
    printf("   %s, %d requests with --timings: medians (n: how many of the steps, when not one "
           "per request)\n", t->label, druns);
    printf("     %-38s %-18s %10s %10s %6s\n", "step", "who", "wall", "cpu", "faults");
    for (int k = 0; k < t->nsteps; k++) {
        const struct step *s = &t->s[k];
        char n[16] = "";
        if (s->n != druns)
            snprintf(n, sizeof n, "  n=%d", s->n);
        printf("     %-38s %-18s %7.1f ms %7.2f ms %6.0f%s\n", s->step, s->who,
               median_of(s->wall, s->n), median_of(s->cpu, s->n), median_of(s->faults, s->n), n);
    }
    printf("     request to output %.1f ms, to exit %.1f ms (medians, measured by the bench);\n"
           "     the client's (%s) steps add up to %.1f ms (median of the sums)\n",
           t->out * 1e3, t->exit * 1e3, CLIENT, median_of(t->client, druns));
}

/* The median CPU of a step of 9., -1 when it never came. */
static double step_cpu(const struct timings *t, const char *step)
{
    for (int k = 0; k < t->nsteps; k++)
        if (strcmp(t->s[k].step, step) == 0)
            return median_of(t->s[k].cpu, t->s[k].n);
    return -1;
}

static void print_summary(void)
{
    printf("\n10. Summary against the issue's targets\n");
    printf("     %-58s %10s %10s\n", "", "figure", "target");
    printf("     %-58s %10.3f %10s\n", "DispVM on demand / cold start (4. / 1.)",
           R.demand.out / R.cold, "<= 0.10");
    printf("     %-58s %10.2f %10s\n", "preloaded / qvm-run -p 'echo hi' (6. / 2.)",
           R.pre.out / R.echo, "<= 2");
    printf("     %-58s %10.2f %10s\n", "  the same, qvm-run back to back (no idle)",
           R.pre.out / R.echo_b2b, "-");
    printf("     %-58s %10.2f %10s\n", "preloaded / qvm-run -p VMShell 'uname -n' (6. / 2.)",
           R.pre.out / R.shell, "<= 2");
    printf("     %-58s %10.2f %10s\n", "  like for like: qvm-run --dispvm / qvm-run, 'echo hi' (6.)",
           R.pre_echo / R.echo, "<= 2");
    printf("     %-58s %10.3f %10s\n", "preloaded / cold start (6. / 1.)", R.pre.out / R.cold,
           "<= 0.03");
    printf("     %-58s %7.1f ms %10s\n", "our CPU per DispVM on demand (4.)", R.demand.cpu * 1e3,
           "<= 10 ms");
    printf("     %-58s %7.1f ms %10s\n", "our CPU per preloaded request, the request itself (6.)",
           R.pre.own_med * 1e3, "<= 5 ms");
    printf("     %-58s %7.1f ms %10s\n", "  the same, the mean of the requests", R.pre.cpu_own * 1e3,
           "-");
    printf("     %-58s %7.1f ms %10s\n", "  in all, with its replacement", R.pre.cpu * 1e3, "-");
    const struct burst *b[] = { &R.b_demand, &R.b_pre };
    for (int i = 0; i < 2; i++) {
        char what[80];
        snprintf(what, sizeof what, "16 at once / one request, %s",
                 i ? "preloaded (7b / 6.)" : "on demand (7a / 4.)");
        printf("     %-58s %10.1f %10s   floor %.2f s (%.1f x one request), wall/floor %.2f%s\n",
               what, b[i]->last_out / b[i]->one, "<= 5", b[i]->floor_out,
               b[i]->floor_out / b[i]->one, b[i]->last_out / b[i]->floor_out,
               b[i]->ok ? "" : "  FAILED");
    }
    int cores;
    bench_busy_ticks(&cores);
    printf("       the floor is %d requests' CPU over %d cores: below 5 x one request only when one\n"
           "       request's CPU (all processes) is under 5 x %d / %d = %.2f times its wall\n",
           BURST, cores, cores, BURST, 5.0 * cores / BURST);
    /* Why the floor is where it is: one request's emulator, by thread. */
    const struct timings *t[] = { &R.t_demand, &R.t_pre };
    for (int i = 0; i < 2; i++) {
        double m = step_cpu(t[i], "  emulator: main thread"),
               v = step_cpu(t[i], "  emulator: vCPU threads"),
               o = step_cpu(t[i], "  emulator: other threads");
        if (m >= 0 && v >= 0 && o >= 0)
            printf("       one request %s, its emulator's CPU (9.): main thread %.1f ms, vCPU %.1f ms, "
                   "other %.1f ms\n", i ? "preloaded" : "on demand", m, v, o);
    }
}

/* After a failure: the DispVM service's last words, then the cleanup. */
static void cleanup(void)
{
    char log[200];
    snprintf(log, sizeof log, "%s/dvmd.log", E.run);
    char *text = read_file(log);
    if (text && *text) {
        const char *tail = text + strlen(text);
        for (int lines = 0; tail > text; tail--)     /* its last 20 lines */
            if (tail[-1] == '\n' && ++lines > 20 + (tail == text + strlen(text)))
                break;
        fprintf(stderr, "bench_dispvm: the end of %s:\n%s", log, tail);
    }
    free(text);
    bench_env_cleanup(&E);
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: bench_dispvm TOOLS-DIR GUEST-DIR [RUNS]\n");
        return 2;
    }
    bench_init("bench_dispvm", argv[1]);
    runs = argc > 3 ? atoi(argv[3]) : 10;
    if (runs < 1)
        bench_die("RUNS must be at least 1");
    druns = runs < 10 ? 10 : runs;
    uri = getenv("QUBES_VMM_URI") && *getenv("QUBES_VMM_URI") ? getenv("QUBES_VMM_URI")
                                                              : "qemu:///system";
    unsetenv("QUBES_DISPVM_FEED");      /* the copied clone unless a request says fifo */
    signal(SIGPIPE, SIG_IGN);
    bool cg = bench_cg_setup();
    bench_on_failure(cleanup);
    bench_env_setup(&E, "dvm", argv[2]);
    char *mem[] = { "qvm-prefs", "-g", E.tpl, "memory", NULL };
    bench_exec(0, mem, NULL, R.mem, sizeof R.mem, NULL, NULL);
    R.mem[strcspn(R.mem, "\n")] = '\0';

    int cores;
    bench_busy_ticks(&cores);
    printf("DispVMs against a cold start, side by side on one test guest: T, a template HVM of "
           "%s\n(%s MiB), on %s; %d cores\n", argv[2], R.mem, uri, cores);
    bench_env_print(&E);
    printf("VM figures: medians of %d runs; DispVM figures: medians of %d requests\n", runs, druns);
    printf("each command's clock starts once its process is forked and in the bench's cgroup, just "
           "before its exec;\nbefore each timed request (and batch) the whole machine is idle "
           "(under 3%% of its cores in 0.5 s)\n");
    if (!cg)
        printf("%s\n", bench_cg_says(""));

    bench_say("1. cold start + echo, %d runs", runs);
    cold_start();
    bench_say("2. qvm-run on the running VM");
    running_vm();
    bench_say("3. virsh save and restore");
    virsh_restore();
    print_vm();
    fflush(stdout);

    bench_say("4. DispVMs on demand (shared memory)");
    on_demand();
    bench_say("9. timings on demand");
    R.t_demand.label = "on demand (shared memory)";
    timed_requests(&R.t_demand, false);
    bench_say("5. full image");
    full_image();
    bench_say("8. the CPU of preloads on their own");
    preload_cost();
    bench_say("6. preloaded");
    preloaded();
    bench_say("9. timings preloaded");
    R.t_pre.label = "preloaded";
    timed_requests(&R.t_pre, true);
    bench_say("7. 16 at once");
    bursts();
    print_paths();
    print_bursts();
    print_cpu();
    printf("\n9. Where the time goes: each (step, process) of qfile-daemon-dvm --timings, in the "
           "order\n   they first appear (nested steps indented; the worker's teardown comes after "
           "the exit);\n   'emulator': the DispVM's QEMU, its threads' CPU and page faults from the "
           "request's start\n   (on demand: its whole life, from libvirt's fork; preloaded: from "
           "the claim) until the\n   teardown ends it, that span as the wall time\n");
    print_timings(&R.t_demand);
    print_timings(&R.t_pre);
    print_summary();
    fflush(stdout);
    bench_env_cleanup(&E);
    return 0;
}
