/* What the benchmarks on libvirt share (bench_util.h). */
#include "bench_util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glob.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static struct {
    const char *name, *tools;
    pid_t main_pid;
    void (*cleanup)(void);
    bool dying;
    /* The cgroup: its directory, cgroup.procs, and the usage file (v1:
     * cpuacct.usage in ns; v2: cpu.stat's usage_usec). "": none. */
    char cg[256], cg_procs[300], cg_usage[300];
    bool cg_v2;
} B = { .name = "bench" };

void bench_init(const char *name, const char *tools_dir)
{
    B.name = name;
    B.tools = tools_dir;
    B.main_pid = getpid();
}

void bench_on_failure(void (*cleanup)(void))
{
    B.cleanup = cleanup;
}

void bench_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fflush(stdout);
    fprintf(stderr, "%s: ", B.name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    if (getpid() != B.main_pid)
        _exit(1);
    if (B.cleanup && !B.dying) {
        B.dying = true;
        B.cleanup();
    }
    exit(1);
}

void bench_say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", B.name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

void bench_msleep(double ms)
{
    struct timespec ts = { (time_t)(ms / 1e3), (long)((ms - (time_t)(ms / 1e3) * 1e3) * 1e6) };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* ---- our CPU ---- */

static bool write_text(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    bool ok = write(fd, text, strlen(text)) == (ssize_t)strlen(text);
    close(fd);
    return ok;
}

void bench_cg_enter(void)
{
    char pid[24];
    snprintf(pid, sizeof pid, "%d\n", (int)getpid());
    if (B.cg[0] && !write_text(B.cg_procs, pid))
        _exit(125);
}

pid_t bench_fork_held(bool outside, int *go)
{
    int ready[2], hold[2];
    if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(hold, O_CLOEXEC) < 0)
        bench_die("pipe: %s", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        bench_die("fork: %s", strerror(errno));
    char b = 0;
    if (pid == 0) {
        close(ready[0]);
        close(hold[1]);
        if (!outside)
            bench_cg_enter();
        if (write(ready[1], &b, 1) != 1 || read(hold[0], &b, 1) != 1)
            _exit(125);
        close(ready[1]);
        close(hold[0]);
        return 0;
    }
    close(ready[1]);
    close(hold[0]);
    /* Nothing read: the child died (its status says so when reaped). */
    while (read(ready[0], &b, 1) < 0 && errno == EINTR)
        ;
    close(ready[0]);
    *go = hold[1];
    return pid;
}

void bench_release(int go)
{
    char b = 0;
    (void)!write(go, &b, 1);
    close(go);
}

/* A child that joins the cgroup and exits at once: can we? */
static bool cg_try(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        bench_cg_enter();
        _exit(0);
    }
    int st;
    return pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static bool cg_make(const char *parent, bool v2)
{
    char probe[300];
    snprintf(probe, sizeof probe, "%s/%s", parent, v2 ? "cgroup.procs" : "cpuacct.usage");
    if (access(probe, F_OK) != 0)
        return false;
    snprintf(B.cg, sizeof B.cg, "%s/qubes-bench-%d", parent, (int)getpid());
    if (mkdir(B.cg, 0755) < 0 && errno != EEXIST) {
        B.cg[0] = '\0';
        return false;
    }
    B.cg_v2 = v2;
    snprintf(B.cg_procs, sizeof B.cg_procs, "%s/cgroup.procs", B.cg);
    snprintf(B.cg_usage, sizeof B.cg_usage, "%s/%s", B.cg, v2 ? "cpu.stat" : "cpuacct.usage");
    if (access(B.cg_usage, R_OK) == 0 && cg_try())
        return true;
    rmdir(B.cg);
    B.cg[0] = '\0';
    return false;
}

bool bench_cg_setup(void)
{
    if (B.cg[0])
        return true;
    return cg_make("/sys/fs/cgroup/cpuacct", false) || cg_make("/sys/fs/cgroup", true);
}

bool bench_cg_on(void)
{
    return B.cg[0] != '\0';
}

const char *bench_cg_says(const char *indent)
{
    static char text[640];
    if (B.cg[0])
        snprintf(text, sizeof text, "our CPU: every process the bench starts and what they start "
                 "(the DispVM service,\n%sits workers, qrexec-daemons), in the cgroup %s;\n%snot "
                 "libvirtd, QEMU or the bench itself", indent, B.cg, indent);
    else
        snprintf(text, sizeof text, "our CPU: no cgroup could be made: the tools and the "
                 "children they waited for only\n%s(RUSAGE_CHILDREN); the DispVM service, its "
                 "workers and the qrexec-daemons are NOT counted", indent);
    return text;
}

double bench_our_cpu(void)
{
    if (!B.cg[0]) {
        struct rusage ru;
        getrusage(RUSAGE_CHILDREN, &ru);
        return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
               ru.ru_stime.tv_usec / 1e6;
    }
    FILE *f = fopen(B.cg_usage, "r");
    char line[256];
    double s = -1;
    while (f && s < 0 && fgets(line, sizeof line, f)) {
        unsigned long long v;
        if (!B.cg_v2 && sscanf(line, "%llu", &v) == 1)
            s = v / 1e9;
        else if (B.cg_v2 && sscanf(line, "usage_usec %llu", &v) == 1)
            s = v / 1e6;
    }
    if (f)
        fclose(f);
    if (s < 0)
        bench_die("cannot read %s", B.cg_usage);
    return s;
}

int bench_cg_procs(void)
{
    if (!B.cg[0])
        return 0;
    FILE *f = fopen(B.cg_procs, "r");
    int n = 0, pid;
    while (f && fscanf(f, "%d", &pid) == 1)
        n++;
    if (f)
        fclose(f);
    return n;
}

void bench_cg_settle(double max_s)
{
    if (!B.cg[0])
        return;
    for (double end = bench_now() + max_s; bench_now() < end;) {
        double u0 = bench_our_cpu();
        bench_msleep(250);
        if (bench_our_cpu() - u0 < 1e-3)
            return;
    }
}

unsigned long long bench_busy_ticks(int *cores)
{
    FILE *f = fopen("/proc/stat", "r");
    char line[512];
    unsigned long long u = 0, ni = 0, sy = 0, id = 0, io = 0, irq = 0, sirq = 0, st = 0;
    *cores = 0;
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, "cpu ", 4) == 0)
            sscanf(line + 4, "%llu %llu %llu %llu %llu %llu %llu %llu", &u, &ni, &sy, &id, &io,
                   &irq, &sirq, &st);
        else if (strncmp(line, "cpu", 3) == 0 && isdigit((unsigned char)line[3]))
            (*cores)++;
    }
    if (f)
        fclose(f);
    return u + ni + sy + irq + sirq + st;
}

void bench_machine_settle(double max_s)
{
    int cores;
    double tick = (double)sysconf(_SC_CLK_TCK);
    for (double end = bench_now() + max_s; bench_now() < end;) {
        unsigned long long b0 = bench_busy_ticks(&cores);
        bench_msleep(500);
        if ((double)(bench_busy_ticks(&cores) - b0) / tick < 0.03 * 0.5 * (cores ? cores : 1))
            return;
    }
}

void bench_cg_remove(void)
{
    if (!B.cg[0])
        return;
    for (int i = 0; i < 300 && bench_cg_procs() > 0; i++)
        bench_msleep(100);
    if (rmdir(B.cg) < 0)
        bench_say("cannot remove the cgroup %s (%s): %d process(es) still in it", B.cg,
                  strerror(errno), bench_cg_procs());
    B.cg[0] = '\0';
}

/* ---- running programs ---- */

const char *bench_tool_path(const char *name, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s", B.tools, name);
    return buf;
}

int bench_exec(unsigned flags, char *const argv[], const char *input, char *out, size_t outlen,
               double *wall, double *cpu)
{
    int in[2] = { -1, -1 }, o[2] = { -1, -1 };
    if ((input && pipe2(in, O_CLOEXEC) < 0) || (out && pipe2(o, O_CLOEXEC) < 0))
        bench_die("pipe: %s", strerror(errno));
    char path[4096];
    bench_tool_path(argv[0], path, sizeof path);
    int go;
    pid_t pid = bench_fork_held(flags & BENCH_OUTSIDE, &go);
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        dup2(input ? in[0] : null, 0);
        dup2(out ? o[1] : null, 1);
        dup2(null, 2);
        if (flags & BENCH_PATH)
            execvp(argv[0], argv);
        else
            execv(path, argv);
        _exit(127);
    }
    double t0 = bench_now();
    bench_release(go);
    if (input) {
        close(in[0]);
        /* Short scripts: they fit in the pipe. */
        if (write(in[1], input, strlen(input)) < 0 && errno != EPIPE)
            bench_die("writing to %s: %s", argv[0], strerror(errno));
        close(in[1]);
    }
    if (out) {
        /* What does not fit in `out` is read and dropped. */
        size_t got = 0;
        ssize_t r;
        char sink[4096];
        close(o[1]);
        for (;;) {
            bool room = got + 1 < outlen;
            r = read(o[0], room ? out + got : sink, room ? outlen - 1 - got : sizeof sink);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                break;
            if (room)
                got += (size_t)r;
        }
        out[got] = '\0';
        close(o[0]);
    }
    int st;
    struct rusage ru;
    while (wait4(pid, &st, 0, &ru) < 0)
        if (errno != EINTR)
            bench_die("wait4: %s", strerror(errno));
    if (wall)
        *wall = bench_now() - t0;
    if (cpu)
        *cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
               ru.ru_stime.tv_usec / 1e6;
    int status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if (status != 0 && !(flags & BENCH_MAY_FAIL)) {
        char cmd[512] = "";
        for (int i = 0; argv[i] && strlen(cmd) < sizeof cmd - 64; i++)
            snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd), "%s%s", i ? " " : "", argv[i]);
        bench_die("`%s` failed (status %d)", cmd, status);
    }
    return status;
}

double bench_run(char *const argv[])
{
    double wall;
    bench_exec(0, argv, NULL, NULL, 0, &wall, NULL);
    return wall;
}

/* ---- the scratch installation ---- */

static int remove_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if ((type == FTW_DP ? rmdir(path) : unlink(path)) < 0 && errno != ENOENT)
        bench_say("cannot remove %s: %s", path, strerror(errno));
    return 0;
}

void bench_env_setup(struct bench_env *e, const char *tag, const char *guest_dir)
{
    memset(e, 0, sizeof *e);
    snprintf(e->dir, sizeof e->dir, "/tmp/qubes-bench-%s.XXXXXX", tag);
    /* QEMU, which runs as its own user, passes through to the VMs' files. */
    if (!mkdtemp(e->dir) || chmod(e->dir, 0711) < 0)
        bench_die("cannot make a scratch directory: %s", strerror(errno));
    snprintf(e->run, sizeof e->run, "%s/run", e->dir);
    /* The run directory's files (a DispVM's rules, records of running
     * VMs) are written without fsync: a reboot empties it. On a host it is
     * a tmpfs; so it is here, or figures would count a disk's writes no
     * host does. */
    e->run_tmpfs = mkdir(e->run, 0755) == 0 &&
                   mount("qubes-bench-run", e->run, "tmpfs", MS_NOSUID | MS_NODEV,
                         "mode=0755") == 0;
    setenv("QUBES_BASE_DIR", e->dir, 1);
    setenv("QUBES_RUN_DIR", e->run, 1);
    snprintf(e->root, sizeof e->root, "%s/root.img", guest_dir);
    snprintf(e->kernel, sizeof e->kernel, "%s/kernel", guest_dir);
    snprintf(e->tpl, sizeof e->tpl, "bench-tpl-%d", (int)getpid());
    snprintf(e->net, sizeof e->net, "bench-net-%d", (int)getpid());
    const char *bn = getenv("BENCH_NETWORK");
    e->network = bn && strcmp(bn, "1") == 0;
    if (e->network) {
        char *mk_n[] = { "qvm-create", "-q", "-l", "red", "--net", "-s", "-r", e->root,
                         "--kernel", e->kernel, e->net, NULL };
        char *dflt_net[] = { "qubes-prefs", "-s", "default-netvm", e->net, NULL };
        bench_run(mk_n);
        bench_run(dflt_net);
    }
    char *mk_t[] = { "qvm-create", "-q", "-l", "red", "--hvm-template", "-r", e->root,
                     "--kernel", e->kernel, e->tpl, NULL };
    bench_run(mk_t);
    if (e->network) {
        char *up_n[] = { "qvm-start", "-q", e->net, NULL };
        bench_run(up_n);
    }
}

void bench_env_print(const struct bench_env *e)
{
    printf("run directory: %s\n", e->run_tmpfs ? "a tmpfs, as /run on a host"
                                               : "on the disk of /tmp (no tmpfs could be mounted)");
    printf("networking: %s\n", e->network ? "on (every VM behind a NetVM guest, started first, "
                                            "each with its firewall chains)"
                                          : "off (no netvm)");
}

static void stop_vm(const char *name)
{
    char *kill_argv[] = { "qvm-kill", (char *)name, NULL };
    if (name && name[0])
        bench_exec(BENCH_MAY_FAIL, kill_argv, NULL, NULL, 0, NULL, NULL);
}

void bench_env_cleanup(struct bench_env *e)
{
    if (!e->dir[0])
        return;
    char *stop[] = { "qubes-dvmd", "--stop", NULL };
    char *sweep[] = { "qvm-cleanup-dispvms", "-q", NULL };
    bench_exec(BENCH_MAY_FAIL, stop, NULL, NULL, 0, NULL, NULL);
    stop_vm(e->tpl);
    for (size_t i = 0; i < sizeof e->extra / sizeof *e->extra; i++)
        stop_vm(e->extra[i]);
    bench_exec(BENCH_MAY_FAIL, sweep, NULL, NULL, 0, NULL, NULL);
    if (e->network)
        stop_vm(e->net);
    if (e->run_tmpfs && umount2(e->run, MNT_DETACH) < 0)
        bench_say("cannot unmount the run directory %s: %s", e->run, strerror(errno));
    e->run_tmpfs = false;
    nftw(e->dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
    char pattern[128], link[256];
    glob_t g;
    /* The link to the default template's savefile, when it is ours. */
    ssize_t n = readlink("/dev/shm/qubes/current-savefile", link, sizeof link - 1);
    snprintf(pattern, sizeof pattern, "/dev/shm/qubes/%s-dvm.", e->tpl);
    if (n > 0) {
        link[n] = '\0';
        if (strncmp(link, pattern, strlen(pattern)) == 0)
            unlink("/dev/shm/qubes/current-savefile");
    }
    snprintf(pattern, sizeof pattern, "/dev/shm/qubes/%s-dvm.*", e->tpl);
    if (glob(pattern, 0, NULL, &g) == 0)
        for (size_t i = 0; i < g.gl_pathc; i++)
            unlink(g.gl_pathv[i]);
    globfree(&g);
    bench_cg_remove();
    e->dir[0] = '\0';
}
