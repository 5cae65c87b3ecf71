/* Cold start of the test guest to agent-ready, the orchestrator's own CPU
 * time per start against the wall time spent in libvirt and QEMU, and the
 * time to kill; then DispVMs from the savefile against a cold start, each
 * measured from the request to the service's complete output, with the
 * teardown apart. Prints figures only. With BENCH_NETWORK=1 every VM and
 * DispVM sits behind a NetVM guest (started before the first figure), with
 * its firewall chains: the same figures with networking on.
 * Usage: bench_lifecycle TOOLS-DIR GUEST-DIR [RUNS] */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
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
    fflush(stdout);
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

static double children_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* DispVM records that are not waiting preloads, in qubes.xml. */
static int disp_records(void)
{
    char path[4200], text[1 << 17];
    snprintf(path, sizeof path, "%s/qubes.xml", getenv("QUBES_BASE_DIR"));
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(text, 1, sizeof text - 1, f) : 0;
    if (f)
        fclose(f);
    text[n] = '\0';
    int count = 0;
    for (char *p = text; (p = strstr(p, "<QubesDisposableVm ")); p++) {
        char *end = strchr(p, '>');
        if (end) {
            *end = '\0';
            count += strstr(p, "preload=\"True\"") == NULL;
            *end = '>';
        }
    }
    return count;
}

/* Teardown of one DispVM, from the end of its service's output: until its
 * run directory is gone (QEMU killed, files removed) and until its record
 * is gone (the last step). */
struct teardown {
    double killed, dropped;
};

static void follow_teardown(const char *name, double t_output, struct teardown *td)
{
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/vms/%s", getenv("QUBES_RUN_DIR"), name);
    td->killed = td->dropped = -1;
    for (int i = 0; i < 20000 && (td->killed < 0 || td->dropped < 0); i++) {
        if (td->killed < 0 && access(dir, F_OK) != 0)
            td->killed = now_s() - t_output;
        if (td->dropped < 0 && disp_records() == 0)
            td->dropped = now_s() - t_output;
        usleep(500);
    }
}

/* qfile-daemon-dvm with `script` as the service's input: *output gets the
 * time until `expect` arrived, the return value the time until it exited.
 * With `td`, the script must print the DispVM's name (uname -n) first: its
 * teardown is followed (above). */
static double dispvm_once(const char *tpl, const char *script, const char *expect,
                          double *output, struct teardown *td)
{
    int in[2], out[2];
    if (pipe(in) < 0 || pipe(out) < 0)
        exit(1);
    char path[4096];
    snprintf(path, sizeof path, "%s/qfile-daemon-dvm", tools);
    fflush(stdout);
    double t0 = now_s();
    pid_t pid = fork();
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[0]);
        close(in[1]);
        close(out[0]);
        close(out[1]);
        execl(path, "qfile-daemon-dvm", "-q", "-t", tpl, "qubes.VMShell", "dom0", "DEFAULT",
              (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    if (write(in[1], script, strlen(script)) < 0)
        exit(1);
    close(in[1]);
    char buf[4096];
    size_t got = 0;
    *output = -1;
    ssize_t r;
    while ((r = read(out[0], buf + got, sizeof buf - 1 - got)) > 0) {
        got += (size_t)r;
        buf[got] = '\0';
        if (*output < 0 && strstr(buf, expect))
            *output = now_s() - t0;
    }
    close(out[0]);
    int st;
    waitpid(pid, &st, 0);
    double total = now_s() - t0;
    if (*output < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "bench_lifecycle: qfile-daemon-dvm failed\n");
        exit(1);
    }
    if (td) {
        char name[64] = "";
        sscanf(buf, "%63s", name);
        follow_teardown(name, t0 + *output, td);
    }
    return total;
}

/* The proportional memory of the QEMU running domain `name`, in KiB. */
static long qemu_pss_kib(const char *name)
{
    char needle[96];
    snprintf(needle, sizeof needle, "guest=%s,", name);
    DIR *d = opendir("/proc");
    struct dirent *e;
    long pss = -1;
    while (d && (e = readdir(d)) && pss < 0) {
        char path[300], buf[8192];
        snprintf(path, sizeof path, "/proc/%s/cmdline", e->d_name);
        int fd = open(path, O_RDONLY);
        if (fd < 0)
            continue;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0)
            continue;
        for (ssize_t i = 0; i < n; i++)
            if (!buf[i])
                buf[i] = ' ';
        buf[n] = '\0';
        if (!strstr(buf, needle))
            continue;
        snprintf(path, sizeof path, "/proc/%s/smaps_rollup", e->d_name);
        FILE *f = fopen(path, "r");
        while (f && fgets(buf, sizeof buf, f))
            if (sscanf(buf, "Pss: %ld kB", &pss) == 1)
                break;
        if (f)
            fclose(f);
    }
    if (d)
        closedir(d);
    return pss;
}

/* Total PSS of our DispVM domains, KiB; *seen gets how many. */
static long sum_pss(int *seen)
{
    char vms[4200];
    snprintf(vms, sizeof vms, "%s/vms", getenv("QUBES_RUN_DIR"));
    long total = 0, p;
    *seen = 0;
    DIR *v = opendir(vms);
    struct dirent *e;
    while (v && (e = readdir(v)))
        if (strncmp(e->d_name, "disp", 4) == 0 && (p = qemu_pss_kib(e->d_name)) >= 0) {
            total += p;
            (*seen)++;
        }
    if (v)
        closedir(v);
    return total;
}

/* Mean PSS of `n` DispVMs running at once, KiB. */
static long pss_of_running(const char *tpl, int n)
{
    pid_t pids[16];
    for (int i = 0; i < n; i++) {
        fflush(stdout);
        if ((pids[i] = fork()) == 0) {
            double o;
            dispvm_once(tpl, "echo up; sleep 12\n", "up\n", &o, NULL);
            _exit(0);
        }
    }
    int seen = 0;
    for (int tries = 0; tries < 200 && seen < n; tries++) {
        usleep(50000);
        sum_pss(&seen);
    }
    sleep(2);   /* all up and running their service: measure now */
    long total = sum_pss(&seen);
    for (int i = 0; i < n; i++)
        waitpid(pids[i], NULL, 0);
    for (int i = 0; i < 10000 && disp_records() > 0; i++)
        usleep(1000);
    return seen ? total / seen : -1;
}

/* Waits (up to 10 s) until a preload waits in the database `dbfile`. */
static void wait_preload(const char *dbfile)
{
    for (int k = 0; k < 200; k++) {
        char text[1 << 16] = "";
        FILE *f = fopen(dbfile, "r");
        size_t n = f ? fread(text, 1, sizeof text - 1, f) : 0;
        if (f)
            fclose(f);
        text[n] = '\0';
        if (strstr(text, "preload=\"True\""))
            return;
        usleep(50000);
    }
}

struct path_figures {
    double out, killed, dropped, cpu;
    long long size;
    long pss;
};

/* `runs` requests on the current savefile: medians and CPU per DispVM. */
static void requests(const char *tpl, int runs, struct path_figures *f)
{
    double *out = calloc((size_t)runs, sizeof *out), *killed = calloc((size_t)runs, sizeof *killed);
    double *dropped = calloc((size_t)runs, sizeof *dropped);
    double cpu0 = children_cpu();
    for (int i = 0; i < runs; i++) {
        struct teardown td;
        dispvm_once(tpl, "uname -n\n", "disp", &out[i], &td);
        killed[i] = td.killed;
        dropped[i] = td.dropped;
    }
    f->cpu = (children_cpu() - cpu0) / runs;
    f->out = median(out, runs);
    f->killed = median(killed, runs);
    f->dropped = median(dropped, runs);
    free(out);
    free(killed);
    free(dropped);
}

static long long savefile_size(const char *tpl)
{
    char save[4200];
    struct stat st;
    snprintf(save, sizeof save, "%s/dvmdata/%s-dvm.savefile", getenv("QUBES_BASE_DIR"), tpl);
    return stat(save, &st) == 0 ? (long long)st.st_size : -1;
}

static void dispvm_bench(const char *tpl, int runs, double cold, double cold_teardown)
{
    char *prep[] = { "qvm-create-default-dvm", "-q", (char *)tpl, NULL };
    char *mem_shared[] = { "qubes-prefs", "-s", "dispvm-memory", "shared", NULL };
    char *mem_full[] = { "qubes-prefs", "-s", "dispvm-memory", "full", NULL };
    struct path_figures full = { 0 }, fifo = { 0 }, shared = { 0 }, pre = { 0 };

    /* The full-image path: a copy of the savefile per DispVM, or a FIFO. */
    run(mem_full, NULL);
    double prep_full = run(prep, NULL);
    full.size = savefile_size(tpl);
    requests(tpl, runs, &full);
    setenv("QUBES_DISPVM_FEED", "fifo", 1);
    requests(tpl, runs, &fifo);
    unsetenv("QUBES_DISPVM_FEED");
    full.pss = pss_of_running(tpl, 5);

    /* The shared-memory path. */
    run(mem_shared, NULL);
    double prep_shared = run(prep, NULL);
    shared.size = savefile_size(tpl);
    requests(tpl, runs, &shared);
    shared.pss = pss_of_running(tpl, 5);

    /* Preloaded (shared memory): before each request, wait until one waits. */
    char *pre_on[] = { "qubes-prefs", "-s", "dispvm-preload", "1", NULL };
    char *pre_off[] = { "qubes-prefs", "-s", "dispvm-preload", "0", NULL };
    char *cleanup[] = { "qvm-cleanup-dispvms", "-q", NULL };
    run(pre_on, NULL);
    run(prep, NULL);
    char dbfile[4200];
    snprintf(dbfile, sizeof dbfile, "%s/qubes.xml", getenv("QUBES_BASE_DIR"));
    /* A parked preload's memory. */
    wait_preload(dbfile);
    int seen;
    pre.pss = sum_pss(&seen);
    if (seen != 1)
        pre.pss = -1;
    double *pout = calloc((size_t)runs, sizeof *pout), *pkill = calloc((size_t)runs, sizeof *pkill);
    double *pdrop = calloc((size_t)runs, sizeof *pdrop);
    double pcpu0 = children_cpu();
    for (int i = 0; i < runs; i++) {
        wait_preload(dbfile);
        struct teardown td;
        dispvm_once(tpl, "uname -n\n", "disp", &pout[i], &td);
        pkill[i] = td.killed;
        pdrop[i] = td.dropped;
    }
    /* The background restores count: they are the price of preloading. */
    pre.cpu = (children_cpu() - pcpu0) / runs;
    run(pre_off, NULL);
    sleep(2);
    run(cleanup, NULL);
    pre.out = median(pout, runs);
    pre.killed = median(pkill, runs);
    pre.dropped = median(pdrop, runs);

    printf("\nDispVMs of a 512 MiB guest, %d requests each; output: time from the request to the "
           "service's\ncomplete output; teardown, from then (qfile-daemon-dvm does not wait for it): "
           "until QEMU\nis killed and the files are removed, and until the record is dropped too:\n",
           runs);
    printf("  %-34s %9s %8s %6s %15s %8s %7s\n", "", "savefile", "output", "/cold",
           "teardown", "our CPU", "PSS");
    printf("  %-34s %9s %6.0fms %6s %15s %8s %7s\n", "(a) cold: qvm-start + qvm-run echo", "-",
           cold * 1e3, "1", "", "-", "-");
    printf("  %-34s %9s %8s %6s %6.0fms (kill) %8s %7s\n", "", "", "", "", cold_teardown * 1e3,
           "", "");
    const struct { const char *name; struct path_figures *f; } rows[] = {
        { "(b) full image, copied clone", &full },
        { "(b') full image, clone via a FIFO", &fifo },
        { "(d) shared memory", &shared },
        { "(c) preloaded (shared memory)", &pre },
    };
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        const struct path_figures *f = rows[i].f;
        char size[32] = "-", pss[32] = "-", down[32];
        if (f->size > 0)
            snprintf(size, sizeof size, "%lldKiB", f->size >> 10);
        if (f->pss > 0)
            snprintf(pss, sizeof pss, "%ldMiB", f->pss >> 10);
        snprintf(down, sizeof down, "%.0f / %.0fms", f->killed * 1e3, f->dropped * 1e3);
        printf("  %-34s %9s %6.0fms %6.3f %15s %6.1fms %7s\n", rows[i].name, size, f->out * 1e3,
               f->out / cold, down, f->cpu * 1e3, pss);
    }
    printf("  savefiles made in %.1f s (full image) and %.1f s (shared memory)\n", prep_full,
           prep_shared);
    printf("  PSS: per DispVM with 5 running; preloaded: of the one parked preload (paused)\n");
    printf("  shared/full: savefile %.4f, PSS per running DispVM %.2f\n",
           (double)shared.size / (double)full.size, (double)shared.pss / (double)full.pss);
    printf("  our CPU: qfile-daemon-dvm and its children (the disk layers' creation, the session),\n"
           "  per DispVM (not the detached teardown); preloaded: the request and the background\n"
           "  restore of its replacement\n");
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
    /* QEMU, which runs as its own user, passes through to the VMs' files. */
    if (!mkdtemp(dir) || chmod(dir, 0711) < 0)
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
    char net[32];
    snprintf(net, sizeof net, "bench-net-%d", (int)getpid());
    const char *bn = getenv("BENCH_NETWORK");
    bool network = bn && strcmp(bn, "1") == 0;
    char *mk_n[] = { "qvm-create", "-q", "-l", "red", "--net", "-s", "-r", root, "--kernel", kernel,
                     net, NULL };
    char *dflt_net[] = { "qubes-prefs", "-s", "default-netvm", net, NULL };
    char *up_n[] = { "qvm-start", "-q", net, NULL };
    if (network) {
        run(mk_n, NULL);
        run(dflt_net, NULL);
    }
    run(mk_t, NULL);
    run(mk_c, NULL);
    if (network)
        run(up_n, NULL);
    printf("networking: %s\n", network ? "on (VMs and DispVMs behind a NetVM guest, each with "
                                         "its firewall chains)"
                                       : "off (no netvm)");

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
    dispvm_bench(tpl, runs < 10 ? 10 : runs, median(start, runs) + median(echo, runs),
                 median(kill_t, runs));
    char *kill_n[] = { "qvm-kill", net, NULL };
    if (network)
        run(kill_n, NULL);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' /dev/shm/qubes/%s-dvm.*", dir, tpl);
    return system(cmd) == 0 ? 0 : 1;
}
