/* qrexec on the test guest: the latency of `qvm-run -p VM true` on a
 * running VM, eight sessions at once against one, and the throughput of one
 * session through the VM's qrexec-daemon and the caller's pipes, against
 * the same channel driven directly by one multiplexer in this process (the
 * daemon stopped first): what the daemon and the pipes cost. Prints
 * figures only.
 * Usage: bench_qrexec TOOLS-DIR GUEST-DIR [RUNS] */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../qrexec/mux.h"

#define MIB (1024 * 1024)
#define BULK (64 * MIB)

static const char *tools;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Starts a tool with stdin from `in` (NULL: /dev/null), stdout and stderr
 * to /dev/null. */
static pid_t start(char *const argv[], const char *in)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", tools, argv[0]);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen(in ? in : "/dev/null", "r", stdin) || !freopen("/dev/null", "w", stdout) ||
            !freopen("/dev/null", "w", stderr))
            _exit(126);
        execv(path, argv);
        _exit(127);
    }
    return pid;
}

static double finish(pid_t pid, const char *what, double *cpu)
{
    int st;
    struct rusage ru;
    wait4(pid, &st, 0, &ru);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "bench_qrexec: %s failed\n", what);
        exit(1);
    }
    if (cpu)
        *cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
               ru.ru_stime.tv_usec / 1e6;
    return 0;
}

static double run(char *const argv[], const char *in, double *cpu)
{
    double t0 = now_s();
    finish(start(argv, in), argv[0], cpu);
    return now_s() - t0;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---- the channel without the daemon ---- */

static int ended;
static void on_ready(struct qmux *m, void *ctx)
{
    (void)ctx;
    qmux_stop(m);
}
static void on_ended(struct qmux *m, void *sctx, int status, const char *error)
{
    (void)sctx;
    ended = error ? -1 : status == 0 ? 1 : -1;
    qmux_stop(m);
}
static const struct qmux_ops ops = { .ready = on_ready, .ended = on_ended };

/* Seconds for one EXEC session of `cmd` straight on the channel. */
static double direct(struct qmux *m, const char *cmd, const char *in)
{
    char req[256];
    int n = snprintf(req, sizeof req, "root%c%s", 0, cmd);
    int infd = in ? open(in, O_RDONLY | O_CLOEXEC) : -1;
    int out = open("/dev/null", O_WRONLY | O_CLOEXEC);
    ended = 0;
    double t0 = now_s();
    if (!qmux_call(m, QAG_EXEC, req, (uint32_t)n, infd, out, -1, NULL))
        return -1;
    alarm(120);
    qmux_run(m);
    alarm(0);
    return ended == 1 ? now_s() - t0 : -1;
}

static void direct_bench(const char *rundir, const char *vm, const char *zeros, double through[2])
{
    char lock[4300], sock[4300], pid[32] = "";
    snprintf(lock, sizeof lock, "%s/vms/%s/qrexec.lock", rundir, vm);
    snprintf(sock, sizeof sock, "%s/vms/%s/agent.sock", rundir, vm);
    int fd = open(lock, O_RDWR | O_CLOEXEC);
    if (fd < 0 || pread(fd, pid, sizeof pid - 1, 0) <= 0 || atoi(pid) <= 0) {
        printf("  (no qrexec-daemon pid in %s)\n", lock);
        return;
    }
    kill(atoi(pid), SIGTERM);
    flock(fd, LOCK_EX);         /* it is gone */
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s", sock);
    int chan = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (connect(chan, (struct sockaddr *)&addr, sizeof addr) < 0) {
        printf("  (cannot connect to %s: %s)\n", sock, strerror(errno));
        return;
    }
    struct qmux *m = qmux_new(chan, QMUX_HOST, &ops, NULL);
    alarm(30);
    qmux_run(m);
    alarm(0);
    double out = direct(m, "head -c 67108864 /dev/zero", NULL);
    double in = direct(m, "cat >/dev/null", zeros);
    through[0] = out > 0 ? BULK / MIB / out : 0;
    through[1] = in > 0 ? BULK / MIB / in : 0;
    qmux_free(m);
    close(chan);
    close(fd);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench_qrexec TOOLS-DIR GUEST-DIR [RUNS]\n");
        return 2;
    }
    tools = argv[1];
    const char *guest = argv[2];
    int runs = argc > 3 ? atoi(argv[3]) : 10;
    if (runs < 3)
        runs = 3;
    signal(SIGPIPE, SIG_IGN);
    char dir[] = "/tmp/qubes-bench-qx.XXXXXX", rundir[64], root[4200], kernel[4200];
    char zeros[128];
    /* QEMU, which runs as its own user, passes through to the VMs' files. */
    if (!mkdtemp(dir) || chmod(dir, 0711) < 0)
        return 1;
    snprintf(rundir, sizeof rundir, "%s/run", dir);
    snprintf(zeros, sizeof zeros, "%s/zeros", dir);
    setenv("QUBES_BASE_DIR", dir, 1);
    setenv("QUBES_RUN_DIR", rundir, 1);
    snprintf(root, sizeof root, "%s/root.img", guest);
    snprintf(kernel, sizeof kernel, "%s/kernel", guest);
    int zfd = open(zeros, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (zfd < 0 || ftruncate(zfd, BULK) < 0)
        return 1;
    close(zfd);
    char tpl[32], vm[32];
    snprintf(tpl, sizeof tpl, "bqx-tpl-%d", (int)getpid());
    snprintf(vm, sizeof vm, "bqx-vm-%d", (int)getpid());
    char *mk_t[] = { "qvm-create", "-q", "-l", "red", "--hvm-template", "-r", root, "--kernel",
                     kernel, tpl, NULL };
    char *mk_c[] = { "qvm-create", "-q", "-l", "red", "-H", "-t", tpl, vm, NULL };
    char *up[] = { "qvm-start", "-q", vm, NULL };
    run(mk_t, NULL, NULL);
    run(mk_c, NULL, NULL);
    run(up, NULL, NULL);

    double *lat = calloc((size_t)runs, sizeof *lat), *cpu = calloc((size_t)runs, sizeof *cpu);
    char *t_argv[] = { "qvm-run", "-p", vm, "true", NULL };
    for (int i = 0; i < runs; i++)
        lat[i] = run(t_argv, NULL, &cpu[i]);
    printf("qrexec on a running VM (the test guest, TCG), %d runs each:\n", runs);
    double lat_m = median(lat, runs);     /* sorts: lat[0] is then the least */
    printf("  qvm-run -p VM true: median %.1f ms (min %.1f), qvm-run's CPU %.1f ms\n",
           lat_m * 1e3, lat[0] * 1e3, median(cpu, runs) * 1e3);

    char *s_argv[] = { "qvm-run", "-p", vm, "sleep 1", NULL };
    double *one = calloc((size_t)runs, sizeof *one), *eight = calloc((size_t)runs, sizeof *eight);
    for (int i = 0; i < runs; i++) {
        one[i] = run(s_argv, NULL, NULL);
        double t0 = now_s();
        pid_t p[8];
        for (int k = 0; k < 8; k++)
            p[k] = start(s_argv, NULL);
        for (int k = 0; k < 8; k++)
            finish(p[k], "qvm-run sleep 1", NULL);
        eight[i] = now_s() - t0;
    }
    double m1 = median(one, runs), m8 = median(eight, runs);
    printf("  'sleep 1': one session %.0f ms; 8 at once %.0f ms in total (%.2fx one; one after "
           "another would be 8x)\n", m1 * 1e3, m8 * 1e3, m8 / m1);

    char *out_argv[] = { "qvm-run", "-p", vm, "head -c 67108864 /dev/zero", NULL };
    char *in_argv[] = { "qvm-run", "-p", vm, "cat >/dev/null", NULL };
    double t_out = run(out_argv, NULL, NULL), t_in = run(in_argv, zeros, NULL);
    double direct_mb[2] = { 0, 0 };
    direct_bench(rundir, vm, zeros, direct_mb);
    printf("  one session, 64 MiB, through qrexec-daemon and qvm-run's pipes: guest to host %.1f "
           "MB/s, host to guest %.1f MB/s\n", BULK / MIB / t_out, BULK / MIB / t_in);
    printf("  the same channel driven by one multiplexer here (no daemon, no pipes): guest to "
           "host %.1f MB/s, host to guest %.1f MB/s\n", direct_mb[0], direct_mb[1]);
    if (direct_mb[0] > 0 && direct_mb[1] > 0)
        printf("  through the daemon / direct: %.2f and %.2f\n",
               BULK / MIB / t_out / direct_mb[0], BULK / MIB / t_in / direct_mb[1]);

    char *kill_argv[] = { "qvm-kill", vm, NULL };
    run(kill_argv, NULL, NULL);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : 1;
}
