/* Cold start of the test guest to agent-ready, the orchestrator's own CPU
 * time per start against the wall time spent in libvirt and QEMU, and the
 * time to kill. Prints figures only.
 * Usage: bench_lifecycle TOOLS-DIR GUEST-DIR [RUNS] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *tools;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Runs a tool; returns wall seconds, *cpu gets its user+system seconds. */
static double run(char *const argv[], double *cpu)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", tools, argv[0]);
    double t0 = now_s();
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr))
            _exit(126);
        execv(path, argv);
        _exit(127);
    }
    int st;
    struct rusage ru;
    wait4(pid, &st, 0, &ru);
    double wall = now_s() - t0;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "bench_lifecycle: %s %s failed\n", argv[0], argv[1] ? argv[1] : "");
        exit(1);
    }
    if (cpu)
        *cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
               ru.ru_stime.tv_usec / 1e6;
    return wall;
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

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench_lifecycle TOOLS-DIR GUEST-DIR [RUNS]\n");
        return 2;
    }
    tools = argv[1];
    const char *guest = argv[2];
    int runs = argc > 3 ? atoi(argv[3]) : 5;
    char dir[] = "/tmp/qubes-bench-lc.XXXXXX", rundir[64], root[4200], kernel[4200];
    if (!mkdtemp(dir))
        return 1;
    snprintf(rundir, sizeof rundir, "%s/run", dir);
    setenv("QUBES_BASE_DIR", dir, 1);
    setenv("QUBES_RUN_DIR", rundir, 1);
    snprintf(root, sizeof root, "%s/root.img", guest);
    snprintf(kernel, sizeof kernel, "%s/kernel", guest);
    char tpl[32], kid[32];
    snprintf(tpl, sizeof tpl, "bench-tpl-%d", (int)getpid());
    snprintf(kid, sizeof kid, "bench-kid-%d", (int)getpid());
    char *mk_t[] = { "qvm-create", "-q", "-l", "red", "--hvm-template", "-r", root, "--kernel",
                     kernel, tpl, NULL };
    char *mk_c[] = { "qvm-create", "-q", "-l", "red", "-H", "-t", tpl, kid, NULL };
    run(mk_t, NULL);
    run(mk_c, NULL);

    double *start = calloc((size_t)runs, sizeof *start), *cpu = calloc((size_t)runs, sizeof *cpu);
    double *echo = calloc((size_t)runs, sizeof *echo), *kill_t = calloc((size_t)runs, sizeof *kill_t);
    double *kcpu = calloc((size_t)runs, sizeof *kcpu), *rcpu = calloc((size_t)runs, sizeof *rcpu);
    for (int i = 0; i < runs; i++) {
        const char *vm = i % 2 ? tpl : kid;     /* both kinds of disk set-up */
        char *start_argv[] = { "qvm-start", "-q", (char *)vm, NULL };
        char *run_argv[] = { "qvm-run", "-p", (char *)vm, "echo", "hi", NULL };
        char *kill_argv[] = { "qvm-kill", (char *)vm, NULL };
        start[i] = run(start_argv, &cpu[i]);
        echo[i] = run(run_argv, &rcpu[i]);
        kill_t[i] = run(kill_argv, &kcpu[i]);
    }
    printf("cold start of the test guest to agent-ready (qvm-start), %d runs:\n", runs);
    double ms = median(start, runs), mc = median(cpu, runs);
    printf("  wall: median %.0f ms (min %.0f, max %.0f)\n", ms * 1e3, start[0] * 1e3,
           start[runs - 1] * 1e3);
    printf("  our CPU (qvm-start's user+system): median %.1f ms; the rest, %.0f ms, is libvirt,\n"
           "  QEMU and the guest booting (TCG: no usable KVM here)\n", mc * 1e3, (ms - mc) * 1e3);
    printf("qvm-run -p VM 'echo hi' on the running VM: median %.1f ms (our CPU %.1f ms)\n",
           median(echo, runs) * 1e3, median(rcpu, runs) * 1e3);
    printf("qvm-kill: median %.0f ms (our CPU %.1f ms)\n", median(kill_t, runs) * 1e3,
           median(kcpu, runs) * 1e3);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : 1;
}
