/* The database's speed: load, the tools as processes, and write-lock cycles
 * with 1 and 8 contending processes, for databases of 10, 100 and 253 VMs.
 * Prints figures; passes or fails nothing. Usage: bench_db TOOLS-DIR */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../orchestrator/db.h"

static const char *tools;
static char dir[4096], dbpath[4200];

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

struct stats {
    double median, min;
};

static struct stats summarise(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return (struct stats){ n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2, v[0] };
}

static void die(const struct qerr *err)
{
    fprintf(stderr, "bench_db: %s\n", err->msg);
    exit(1);
}

static void set(struct qvm *vm, const char *k, const char *v)
{
    struct qerr err;
    if (qvm_set_attr(vm, k, v, &err) < 0)
        die(&err);
}

/* A VM with the attribute set the original wrote. */
static struct qvm *make_vm(enum qvm_class cls, int qid, const char *name, int tpl, int net,
                           int netid)
{
    struct qvm *vm = qvm_new(cls);
    char num[32], path[256], conf[64];
    snprintf(num, sizeof num, "%d", qid);
    set(vm, "qid", num);
    set(vm, "name", name);
    snprintf(path, sizeof path, "/var/lib/qubes/%s/%s", qvm_class_subdir(cls), name);
    set(vm, "dir_path", path);
    snprintf(conf, sizeof conf, "%s.conf", name);
    set(vm, "conf_file", conf);
    set(vm, "root_img", "root.img");
    set(vm, "private_img", "private.img");
    set(vm, "volatile_img", "volatile.img");
    snprintf(num, sizeof num, "%d", tpl);
    set(vm, "template_qid", tpl < 0 ? "none" : num);
    snprintf(num, sizeof num, "%d", net);
    set(vm, "netvm_qid", net < 0 ? "none" : num);
    set(vm, "uses_default_netvm", "True");
    if (netid > 0) {
        snprintf(num, sizeof num, "%d", netid);
        set(vm, "netid", num);
    }
    set(vm, "label", "green");
    set(vm, "memory", qvm_class_is_hvm(cls) ? "512" : "400");
    set(vm, "maxmem", "4000");
    set(vm, "vcpus", "2");
    set(vm, "pcidevs", "[]");
    set(vm, "internal", "False");
    set(vm, "installed_by_rpm", "False");
    set(vm, "include_in_backups", "True");
    set(vm, "debug", "False");
    set(vm, "autostart", "False");
    set(vm, "services", "{'meminfo-writer': True}");
    set(vm, "default_user", "user");
    set(vm, "qrexec_timeout", "60");
    set(vm, "mac", "None");
    if (qvm_class_is_hvm(cls)) {
        set(vm, "drive", "None");
        set(vm, "timezone", "localtime");
        set(vm, "qrexec_installed", "False");
        set(vm, "guiagent_installed", "False");
        set(vm, "seamless_gui_mode", "False");
    } else {
        set(vm, "kernel", "3.7.6-2");
        set(vm, "kernelopts", "");
        set(vm, "uses_default_kernel", "True");
        set(vm, "uses_default_kernelopts", "True");
    }
    set(vm, "backup_size", "0");
    return vm;
}

/* n VMs: a NetVM, a ProxyVM, two PV templates and two TemplateHVMs, the
 * rest AppVMs and HVMs based on them. */
static void build_db(int n)
{
    struct qvm_collection *c = qvm_collection_new();
    struct qerr err;
    char name[32];
    int qid = 1;
    for (int g = 0; g < QG_COUNT; g++)
        qvm_collection_set_global(c, (enum qglobal)g, -1, NULL);
    qvm_collection_add_dom0(c, &err);
    qvm_collection_set_default_kernel(c, "3.7.6-2", &err);
#define ADD(vm)                                                                               \
    do {                                                                                      \
        if (qvm_collection_add(c, vm, &err) < 0)                                              \
            die(&err);                                                                        \
        qid++;                                                                                \
    } while (0)
    ADD(make_vm(QVM_TEMPLATE, qid, "tpl-a", -1, -1, 0));
    ADD(make_vm(QVM_TEMPLATE, qid, "tpl-b", -1, -1, 0));
    ADD(make_vm(QVM_TEMPLATE_HVM, qid, "thvm-a", -1, -1, 0));
    ADD(make_vm(QVM_TEMPLATE_HVM, qid, "thvm-b", -1, -1, 0));
    ADD(make_vm(QVM_NET, qid, "sys-net", 1, -1, 1));
    ADD(make_vm(QVM_PROXY, qid, "sys-fw", 1, 5, 2));
    qvm_collection_set_global(c, QG_DEFAULT_TEMPLATE, 1, NULL);
    qvm_collection_set_global(c, QG_DEFAULT_FW_NETVM, 5, NULL);
    qvm_collection_set_global(c, QG_CLOCKVM, 5, NULL);
    qvm_collection_set_global(c, QG_DEFAULT_NETVM, 6, NULL);
    qvm_collection_set_global(c, QG_UPDATEVM, 6, NULL);
    while (qid <= n) {
        snprintf(name, sizeof name, "vm%d", qid);
        bool hvm = qid % 2;
        ADD(make_vm(hvm ? QVM_HVM : QVM_APP, qid, name, hvm ? 3 + qid % 4 / 2 : 1 + qid % 4 / 2, 6, 0));
    }
#undef ADD
    struct qubes_db db;
    if (qdb_init(&db, dbpath, &err) < 0 || qdb_lock_for_writing(&db, QDB_CREATE, &err) < 0 ||
        qdb_save(&db, c, &err) < 0)
        die(&err);
    qdb_close(&db);
    qvm_collection_free(c);
}

static struct stats bench_load(int runs)
{
    double *t = malloc(sizeof *t * (size_t)runs);
    struct qerr err;
    for (int i = 0; i < runs; i++) {
        double t0 = now_us();
        struct qubes_db db;
        struct qvm_collection *c;
        if (qdb_init(&db, dbpath, &err) < 0 || qdb_lock_for_reading(&db, &err) < 0 ||
            qdb_load(&db, &c, &err) < 0)
            die(&err);
        qdb_unlock(&db, &err);
        qvm_collection_free(c);
        qdb_close(&db);
        t[i] = now_us() - t0;
    }
    struct stats s = summarise(t, runs);
    free(t);
    return s;
}

/* Wall time of a command run as a process, stdout discarded. */
static struct stats bench_cmd(int runs, char *const argv[], bool alternate_last)
{
    double *t = malloc(sizeof *t * (size_t)runs);
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", argv[0][0] == '/' ? "" : tools, argv[0]);
    for (int i = 0; i < runs; i++) {
        char *args[16];
        char val[16];
        int k = 0;
        for (; argv[k]; k++)
            args[k] = argv[k];
        args[k] = NULL;
        if (alternate_last) {
            snprintf(val, sizeof val, "%d", 400 + i % 2);
            args[k - 1] = val;
        }
        fflush(stdout);
        double t0 = now_us();
        pid_t pid = fork();
        if (pid == 0) {
            if (!freopen("/dev/null", "w", stdout))
                _exit(126);
            execv(argv[0][0] == '/' ? argv[0] : path, args);
            _exit(127);
        }
        int st;
        waitpid(pid, &st, 0);
        t[i] = now_us() - t0;
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "bench_db: %s failed (status %d)\n", argv[0], st);
            exit(1);
        }
    }
    struct stats s = summarise(t, runs);
    free(t);
    return s;
}

static long read_counter(void)
{
    struct qubes_db db;
    struct qvm_collection *c;
    struct qerr err;
    long v = 0;
    if (qdb_init(&db, dbpath, &err) < 0 || qdb_lock_for_reading(&db, &err) < 0 ||
        qdb_load(&db, &c, &err) < 0)
        die(&err);
    const char *s = qattrs_get(&c->root_attrs, "bench_counter");
    if (s)
        v = atol(s);
    qvm_collection_free(c);
    qdb_close(&db);
    return v;
}

/* procs processes, each doing `cycles` lock-load-modify-save-unlock. */
static double bench_cycles(int procs, int cycles, long *lost)
{
    long before = read_counter();
    fflush(stdout);
    double t0 = now_us();
    for (int p = 0; p < procs; p++) {
        if (fork() == 0) {
            struct qubes_db db;
            struct qerr err;
            qdb_init(&db, dbpath, &err);
            for (int i = 0; i < cycles; i++) {
                struct qvm_collection *c;
                if (qdb_lock_for_writing(&db, 0, &err) < 0 || qdb_load(&db, &c, &err) < 0)
                    die(&err);
                const char *s = qattrs_get(&c->root_attrs, "bench_counter");
                char num[32];
                snprintf(num, sizeof num, "%ld", (s ? atol(s) : 0) + 1);
                qattrs_set(&c->root_attrs, "bench_counter", num);
                if (qdb_save(&db, c, &err) < 0)
                    die(&err);
                qdb_unlock(&db, &err);
                qvm_collection_free(c);
            }
            qdb_close(&db);
            _exit(0);
        }
    }
    for (int p = 0; p < procs; p++)
        wait(NULL);
    double secs = (now_us() - t0) / 1e6;
    *lost = before + (long)procs * cycles - read_counter();
    return procs * cycles / secs;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: bench_db TOOLS-DIR\n");
        return 2;
    }
    tools = argv[1];
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(dir, sizeof dir, "%s/qubes-bench.XXXXXX", tmp);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(dbpath, sizeof dbpath, "%s/qubes.xml", dir);
    setenv("QUBES_BASE_DIR", dir, 1);
    setenv("QUBES_OFFLINE", "1", 1);
    unsetenv(QDB_LOCK_FD_ENV);

    /* qids run from 1 to 253, so 253 VMs (and dom0) is the largest valid
     * database: it stands in for the 1000 the issue names. */
    const int sizes[] = { 10, 100, QUBES_MAX_QID };
    double ls_max = 0, set_100 = 0;
    char *truecmd[] = { "/bin/true", NULL };
    struct stats base = bench_cmd(30, truecmd, false);
    printf("process start-up (fork+exec of /bin/true): median %.2f ms\n", base.median / 1e3);
    printf("(saves include fsync of the new file and of the directory: disk speed matters)\n\n");
    printf("%6s %9s | %12s | %14s %14s %14s %14s | %12s %12s %6s\n", "VMs", "size", "load ms",
           "qvm-ls ms", "ls --raw ms", "prefs -g ms", "prefs -s ms", "cycles/s x1",
           "cycles/s x8", "lost");
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        int n = sizes[i];
        unlink(dbpath);
        build_db(n);
        FILE *f = fopen(dbpath, "r");
        fseek(f, 0, SEEK_END);
        long size = ftell(f);
        fclose(f);
        char vm[32];
        snprintf(vm, sizeof vm, "vm%d", n);
        char *ls[] = { "qvm-ls", "--offline-mode", NULL };
        char *raw[] = { "qvm-ls", "--raw-list", NULL };
        char *get[] = { "qvm-prefs", "--offline-mode", "-g", vm, "memory", NULL };
        char *put[] = { "qvm-prefs", "--offline-mode", "-s", vm, "memory", "400", NULL };
        struct stats load = bench_load(50);
        struct stats s_ls = bench_cmd(30, ls, false), s_raw = bench_cmd(30, raw, false);
        struct stats s_get = bench_cmd(30, get, false), s_set = bench_cmd(30, put, true);
        long lost1, lost8;
        double c1 = bench_cycles(1, 200, &lost1), c8 = bench_cycles(8, 50, &lost8);
        printf("%6d %8ldK | %5.2f (%5.2f) | %6.2f (%5.2f) %6.2f (%5.2f) %6.2f (%5.2f) %6.2f (%5.2f) | %12.0f %12.0f %6ld\n",
               n, size / 1024, load.median / 1e3, load.min / 1e3, s_ls.median / 1e3,
               s_ls.min / 1e3, s_raw.median / 1e3, s_raw.min / 1e3, s_get.median / 1e3,
               s_get.min / 1e3, s_set.median / 1e3, s_set.min / 1e3, c1, c8, lost1 + lost8);
        if (n == QUBES_MAX_QID)
            ls_max = s_ls.median;
        if (n == 100)
            set_100 = s_set.median;
    }
    printf("(median (min) of 50 loads and 30 runs of each tool; cycles: 200 by one process, "
           "8 x 50 by eight)\n\n");
    printf("aim: qvm-ls over 1000 VMs under 10 ms: %.2f ms over %d VMs, the most a database "
           "can hold\n", ls_max / 1e3, QUBES_MAX_QID);
    printf("aim: qvm-prefs -s on 100 VMs under 3 ms: %.2f ms\n", set_100 / 1e3);
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : 1;
}
