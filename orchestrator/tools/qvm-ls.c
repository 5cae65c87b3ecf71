/* qvm-ls: list the VMs of the database with their power state. */
#include <ftw.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../hosts.h"
#include "../memuse.h"
#include "../net.h"
#include "../util.h"
#include "tool.h"

static const char *prog = "qvm-ls";

static void usage(FILE *f)
{
    fprintf(f,
"Usage: %s [options]\n"
"List the VMs: name, running mark, power state, updateable, type, template,\n"
"netvm (* = the default one), label, and for running VMs their memory and the\n"
"CPU time they used. Templates show as [name], NetVMs and ProxyVMs as {name}.\n"
"A first line gives the host's free memory (not in offline mode).\n"
"\n"
"Options:\n"
"      --raw-list       print only the names, one per line (no hypervisor access)\n"
"  -c, --cpu-interval MS  add each running VM's CPU use over MS milliseconds\n"
"                       (100 = one CPU busy all along; from two samples)\n"
"  -i, --ids            add qid, and xid: the domain's id on the hypervisor\n"
"                       (- when it does not run)\n"
"  -n, --network        add ip (the VM's address), ip back (the gateway a NetVM\n"
"                       or ProxyVM holds for the VMs behind it) and gateway/DNS\n"
"                       (its own gateway, its netvm); without template\n"
"  -d, --disk           add the disk use of the VM's files, MiB allocated (curr)\n"
"                       and apparent (max): private image, root image (a\n"
"                       template's for the VMs based on it), the root layer\n"
"                       (vol, volatile.img) and the whole VM directory (disk);\n"
"                       without template and netvm\n"
"  -k, --kernel         add kernel and kernelopts as qvm-prefs has them\n"
"                       (* = the default; n/a where they do not apply)\n"
"  -m, --memory, --mem  instead of the list, for each running VM: its\n"
"                       emulator process's memory (from /proc/PID/smaps, KiB\n"
"                       rounded to MiB): PSS, what is private to it, what it\n"
"                       shares with its DispVM template's memory file (mapped,\n"
"                       never written), and the guest's memory (the\n"
"                       hypervisor's, its memory property)\n"
"      --offline-mode   do not contact the hypervisor (every VM shows Halted)\n"
"      --version        show the version and the hypervisor backends\n"
"  -h, --help           show this help\n", prog);
}

/* qvm-ls --memory: one line per running VM whose emulator process we find. */
static int memory_table(struct qubes *q, struct qvm **vms, size_t n, const struct vmm_domain *doms,
                        size_t ndoms)
{
    printf("%-31s %8s %8s %8s %8s  %s\n", "name", "PSS MiB", "private", "shared", "guest",
           "memory");
    for (size_t i = 0; i < n; i++) {
        const struct vmm_domain *dom = NULL;
        for (size_t k = 0; k < ndoms; k++)
            if (strcmp(doms[k].name, vms[i]->name) == 0 && doms[k].id >= 0)
                dom = &doms[k];
        int pid = dom ? vmm_domain_pid(&q->vmm, vms[i]->name) : 0;
        struct qvm_memuse m;
        if (pid <= 0 || qvm_memuse(pid, &m) < 0)
            continue;
        printf("%-31s %8.1f %8.1f %8.1f %8lu  %s\n", vms[i]->name, m.pss_kib / 1024.0,
               m.private_kib / 1024.0, m.shared_kib / 1024.0, dom->mem_kib / 1024,
               m.maps_ram_file ? "copy-on-write over its template's memory file" : "its own");
    }
    return 0;
}

/* Display order: dom0, net VMs, each template followed by the VMs based on
 * it, then VMs without a template, DispVMs last; by name within a group. */
static int group_key(const struct qvm_collection *c, const struct qvm *vm, const char **primary)
{
    *primary = vm->name;
    if (vm->cls == QVM_ADMIN)
        return 0;
    if (vm->cls == QVM_DISP)
        return 4;
    if (qvm_class_is_netvm(vm->cls))
        return 1;
    if (qvm_class_is_template(vm->cls))
        return 2;
    if (vm->template_qid >= 0) {
        struct qvm *t = qvm_collection_by_qid(c, vm->template_qid);
        if (t) {
            *primary = t->name;
            return 2;
        }
    }
    return 3;
}

static const struct qvm_collection *sort_coll;

static int cmp_display(const void *a, const void *b)
{
    const struct qvm *x = *(struct qvm *const *)a, *y = *(struct qvm *const *)b;
    const char *px, *py;
    int gx = group_key(sort_coll, x, &px), gy = group_key(sort_coll, y, &py);
    if (gx != gy)
        return gx - gy;
    int r = strcmp(px, py);
    if (r)
        return r;
    /* Within a template's group the template comes first. */
    bool tx = qvm_class_is_template(x->cls), ty = qvm_class_is_template(y->cls);
    if (tx != ty)
        return tx ? -1 : 1;
    return strcmp(x->name, y->name);
}

enum col { COL_NAME, COL_ON, COL_STATE, COL_UPDBL, COL_TYPE, COL_TEMPLATE, COL_NETVM, COL_LABEL,
           COL_MEM, COL_CPU, COL_PCT, COL_QID, COL_XID, COL_IP, COL_IP_BACK, COL_GATEWAY,
           COL_PRIV_CURR, COL_PRIV_MAX, COL_ROOT_CURR, COL_ROOT_MAX, COL_VOL_CURR, COL_DISK,
           COL_KERNEL, COL_KERNELOPTS, NCOLS };
static const char *const headers[NCOLS] = {
    "name", "on", "state", "updbl", "type", "template", "netvm", "label", "mem MiB", "cpu s",
    "cpu %", "qid", "xid", "ip", "ip back", "gateway/DNS", "priv-curr", "priv-max",
    "root-curr", "root-max", "vol-curr", "disk", "kernel", "kernelopts",
};

/* The columns shown, in order: the original's default ones with memory and
 * CPU time, then those of each option in the original's order (-i, -n, -d,
 * -k; -n drops template, -d template and netvm, as the original did). */
struct columns {
    enum col col[NCOLS];
    int n;
};

static void add_col(struct columns *c, enum col k)
{
    c->col[c->n++] = k;
}

static void drop_col(struct columns *c, enum col k)
{
    for (int i = 0; i < c->n; i++)
        if (c->col[i] == k) {
            memmove(&c->col[i], &c->col[i + 1], (size_t)(c->n - i - 1) * sizeof c->col[0]);
            c->n--;
            return;
        }
}

/* What a row knows of its VM. */
struct row {
    struct qubes *q;
    const struct qvm *vm;
    enum qvm_power st;
    const struct vmm_domain *dom, *was;     /* its domain now, and at the first sample */
    long elapsed;                           /* ms between the samples */
};

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
    va_list ap;
    char *s;
    va_start(ap, f);
    if (vasprintf(&s, f, ap) < 0)
        s = NULL;
    va_end(ap);
    return s;
}

/* Disk use: bytes allocated, and the apparent size. */
struct usage {
    bool exists;
    unsigned long long alloc, size;
};

static struct usage file_usage(struct qubes *q, const struct qvm *vm, const char *prop)
{
    struct usage u = { 0 };
    struct stat sb;
    struct qerr e;
    char *path = qubes_prefs_get(q, vm, prop, &e);
    if (path && path[0] && stat(path, &sb) == 0 && S_ISREG(sb.st_mode))
        u = (struct usage){ true, (unsigned long long)sb.st_blocks * 512,
                            (unsigned long long)sb.st_size };
    free(path);
    return u;
}

static unsigned long long walked;

static int add_blocks(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)path, (void)flag, (void)ftw;
    walked += (unsigned long long)sb->st_blocks * 512;
    return 0;
}

/* What the VM's directory holds, as du -s counts it (links not followed). */
static struct usage dir_usage(struct qubes *q, const struct qvm *vm)
{
    char dir[PATH_MAX];
    struct stat sb;
    struct qerr e;
    walked = 0;
    if (qubes_vm_dir(q, vm, dir, sizeof dir, &e) < 0 || lstat(dir, &sb) < 0 ||
        !S_ISDIR(sb.st_mode) || nftw(dir, add_blocks, 16, FTW_PHYS) < 0)
        return (struct usage){ 0 };
    return (struct usage){ true, walked, walked };
}

static char *mib(struct usage u, bool alloc)
{
    return u.exists ? fmt("%llu MiB", (alloc ? u.alloc : u.size) >> 20) : strdup("-");
}

/* A property as qvm-prefs shows it, its default marked with *, as the
 * netvm column marks it; n/a where it does not apply. */
static char *pref_cell(struct qubes *q, const struct qvm *vm, const char *prop)
{
    struct qerr e;
    static const char dflt[] = " (default)";
    char *v = vm->cls == QVM_ADMIN ? NULL : qubes_prefs_get(q, vm, prop, &e);
    if (!v)
        return strdup("n/a");
    size_t n = strlen(v), k = sizeof dflt - 1;
    if (n >= k && strcmp(v + n - k, dflt) == 0) {
        v[n - k] = '\0';
        char *marked = fmt("*%s", v);
        free(v);
        return marked;
    }
    return v;
}

static char *net_cell(const struct row *r, enum col k)
{
    const struct qvm *vm = r->vm;
    struct qnet net;
    struct qnet_serving serve;
    struct qerr e;
    if (vm->cls == QVM_ADMIN)
        return strdup("n/a");
    if (qnet_of_vm(r->q->coll, vm, &net, &e) < 0)
        return strdup("?");
    qnet_serving_of_vm(vm, &serve);
    switch (k) {
    case COL_IP: return strdup(net.on ? net.ip : "-");
    case COL_IP_BACK: return strdup(serve.on ? serve.gateway : "n/a");
    default: return strdup(net.on ? net.gateway : "n/a");
    }
}

static char *disk_cell(const struct row *r, enum col k)
{
    const struct qvm *vm = r->vm;
    if (vm->cls == QVM_ADMIN || vm->cls == QVM_DISP)
        return strdup("n/a");
    switch (k) {
    case COL_PRIV_CURR: return mib(file_usage(r->q, vm, "private_img"), true);
    case COL_PRIV_MAX: return mib(file_usage(r->q, vm, "private_img"), false);
    case COL_ROOT_CURR: return mib(file_usage(r->q, vm, "root_img"), true);
    case COL_ROOT_MAX: return mib(file_usage(r->q, vm, "root_img"), false);
    case COL_VOL_CURR: return mib(file_usage(r->q, vm, "volatile_img"), true);
    default: return mib(dir_usage(r->q, vm), true);
    }
}

static char *cell(const struct row *r, enum col k)
{
    const struct qvm *vm = r->vm;
    const struct qvm_collection *c = r->q->coll;
    const struct qvm *tpl = vm->template_qid >= 0 ? qvm_collection_by_qid(c, vm->template_qid)
                                                  : NULL;
    const struct qvm *net = vm->netvm_qid >= 0 ? qvm_collection_by_qid(c, vm->netvm_qid) : NULL;
    bool is_tpl = qvm_class_is_template(vm->cls), is_net = qvm_class_is_netvm(vm->cls);
    bool up = r->dom && r->dom->id >= 0;
    switch (k) {
    case COL_NAME:
        return fmt("%s%s%s", is_tpl ? "[" : is_net ? "{" : "", vm->name,
                   is_tpl ? "]" : is_net ? "}" : "");
    case COL_ON: return strdup(qvm_power_is_running(r->st) ? "*" : "");
    case COL_STATE: return strdup(qvm_power_name(r->st));
    case COL_UPDBL:
        return strdup(vm->cls != QVM_ADMIN && vm->cls != QVM_DISP && (is_tpl || !tpl) ? "Yes" : "");
    case COL_TYPE:
        return strdup(vm->cls == QVM_TEMPLATE_HVM ? "TplHVM" : is_tpl ? "Tpl"
                      : vm->cls == QVM_HVM ? "HVM" : vm->cls == QVM_PROXY ? "Proxy"
                      : vm->cls == QVM_NET ? "Net" : vm->cls == QVM_DISP ? "Disp" : "");
    case COL_TEMPLATE:
        return strdup(vm->cls == QVM_ADMIN || is_tpl || !tpl ? "n/a" : tpl->name);
    case COL_NETVM:
        if (vm->cls == QVM_ADMIN || vm->cls == QVM_NET)
            return strdup("n/a");
        return fmt("%s%s", net && qvm_get_bool(vm, "uses_default_netvm", false) ? "*" : "",
                   net ? net->name : "-");
    case COL_LABEL: return strdup(vm->label ? vm->label->name : "");
    case COL_MEM: return up ? fmt("%lu", r->dom->mem_kib / 1024) : strdup("-");
    case COL_CPU: return up ? fmt("%.1f", r->dom->cpu_ns / 1e9) : strdup("-");
    case COL_PCT:
        if (r->was && r->elapsed > 0 && r->dom->cpu_ns >= r->was->cpu_ns)
            return fmt("%.1f", (double)(r->dom->cpu_ns - r->was->cpu_ns) /
                                   ((double)r->elapsed * 1e4));
        return strdup("-");
    case COL_QID: return fmt("%d", vm->qid);
    case COL_XID:
        if (vm->cls == QVM_ADMIN)
            return strdup("0");
        return up ? fmt("%d", r->dom->id) : strdup("-");
    case COL_IP: case COL_IP_BACK: case COL_GATEWAY: return net_cell(r, k);
    case COL_KERNEL: return pref_cell(r->q, vm, "kernel");
    case COL_KERNELOPTS: return pref_cell(r->q, vm, "kernelopts");
    default: return disk_cell(r, k);
    }
}

static void rule(const struct columns *cols, const size_t *w)
{
    for (int i = 0; i < cols->n; i++) {
        for (size_t k = 0; k < w[cols->col[i]] + 2; k++)
            putchar('-');
        putchar('+');
    }
    putchar('\n');
}

int main(int argc, char **argv)
{
    tool_check_version(argc, argv);
    static const struct option opts[] = {
        { "raw-list", no_argument, NULL, 'r' },
        { "memory", no_argument, NULL, 'm' },
        { "mem", no_argument, NULL, 'm' },
        { "cpu-interval", required_argument, NULL, 'c' },
        { "ids", no_argument, NULL, 'i' },
        { "network", no_argument, NULL, 'n' },
        { "disk", no_argument, NULL, 'd' },
        { "kernel", no_argument, NULL, 'k' },
        { "offline-mode", no_argument, NULL, TOOL_OFFLINE_OPT },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    bool raw = false, offline = false, memory = false;
    bool ids = false, network = false, disk = false, kernel = false;
    long interval = 0;
    int c;
    while ((c = getopt_long(argc, argv, "hmc:indk", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            if (qparse_int(optarg, 1, 60000, &interval) < 0)
                tool_usage_error(prog, "--cpu-interval takes milliseconds, 1..60000");
            break;
        case 'r': raw = true; break;
        case 'm': memory = true; break;
        case 'i': ids = true; break;
        case 'n': network = true; break;
        case 'd': disk = true; break;
        case 'k': kernel = true; break;
        case TOOL_OFFLINE_OPT: offline = true; break;
        case 'h': usage(stdout); return 0;
        default: tool_usage_error(prog, "bad option");
        }
    }
    if (optind != argc)
        tool_usage_error(prog, "no arguments expected");
    if ((raw || memory) && (ids || network || disk || kernel || interval))
        tool_usage_error(prog, raw ? "--raw-list prints names only: no columns to add"
                                   : "--memory is a table of its own: no columns to add");

    struct columns cols = { .n = 0 };
    for (enum col k = COL_NAME; k <= COL_CPU; k++)
        add_col(&cols, k);
    if (interval)
        add_col(&cols, COL_PCT);
    if (ids) {
        add_col(&cols, COL_QID);
        add_col(&cols, COL_XID);
    }
    if (network) {
        drop_col(&cols, COL_TEMPLATE);
        for (enum col k = COL_IP; k <= COL_GATEWAY; k++)
            add_col(&cols, k);
    }
    if (disk) {
        drop_col(&cols, COL_TEMPLATE);
        drop_col(&cols, COL_NETVM);
        for (enum col k = COL_PRIV_CURR; k <= COL_DISK; k++)
            add_col(&cols, k);
    }
    if (kernel) {
        add_col(&cols, COL_KERNEL);
        add_col(&cols, COL_KERNELOPTS);
    }

    struct qubes q;
    struct qerr err;
    if (qubes_open(&q, offline, &err) < 0 || qubes_load_for_reading(&q, &err) < 0)
        tool_fail(prog, &err);

    size_t n;
    struct qvm **vms = qvm_collection_sorted(q.coll, &n);
    if (!vms) {
        qerr_set(&err, "out of memory");
        tool_fail(prog, &err);
    }
    sort_coll = q.coll;
    qsort(vms, n, sizeof *vms, cmp_display);

    if (raw) {
        for (size_t i = 0; i < n; i++)
            puts(vms[i]->name);
        free(vms);
        qubes_close(&q);
        return 0;
    }

    /* One call for every domain's state, not one per VM. */
    struct vmm_domain *doms = NULL;
    size_t ndoms = 0;
    bool states_known = true;
    if (vmm_list_domains(&q.vmm, &doms, &ndoms, &err) < 0) {
        qsay(stderr, "%s: warning: power states unknown: %s", prog, err.msg);
        states_known = false;
    }
    /* CPU use: a second sample after the interval. */
    struct vmm_domain *before = NULL;
    size_t nbefore = 0;
    long t0 = qnow_ms(), elapsed = 0;
    if (interval && states_known) {
        before = doms;
        nbefore = ndoms;
        usleep((useconds_t)interval * 1000);
        if (vmm_list_domains(&q.vmm, &doms, &ndoms, &err) < 0)
            tool_fail(prog, &err);
        elapsed = qnow_ms() - t0;
    }

    if (memory) {
        if (!states_known)
            tool_fail(prog, &err);
        memory_table(&q, vms, n, doms, ndoms);
        vmm_domains_free(doms, ndoms);
        free(vms);
        qubes_close(&q);
        return 0;
    }

    char *(*cells)[NCOLS] = calloc(n, sizeof *cells);
    size_t w[NCOLS];
    for (int i = 0; i < NCOLS; i++)
        w[i] = strlen(headers[i]);
    for (size_t i = 0; i < n && cells; i++) {
        struct row r = { .q = &q, .vm = vms[i], .elapsed = elapsed,
                         .st = states_known ? QVM_POWER_HALTED : QVM_POWER_NA };
        struct qerr e;
        if (r.vm->cls == QVM_ADMIN)
            r.st = QVM_POWER_RUNNING;
        else if (qvm_host(r.vm) && states_known) {  /* asked of its host */
            if (qubes_vm_state(&q, r.vm, &r.st, &e) < 0) {
                qsay(stderr, "%s: warning: power state unknown: %s", prog, e.msg);
                r.st = QVM_POWER_NA;
            }
        } else
            for (size_t k = 0; k < ndoms; k++)
                if (strcmp(doms[k].name, r.vm->name) == 0) {
                    r.dom = &doms[k];
                    r.st = qubes_refine_power(&q, r.vm, r.dom);
                }
        for (size_t k = 0; r.dom && r.dom->id >= 0 && k < nbefore; k++)
            if (strcmp(before[k].name, r.vm->name) == 0 && before[k].id == r.dom->id)
                r.was = &before[k];
        for (int k = 0; k < cols.n; k++) {
            enum col col = cols.col[k];
            char *v = cell(&r, col);
            cells[i][col] = v;
            if (v && strlen(v) > w[col])
                w[col] = strlen(v);
        }
    }
    if (!cells) {
        qerr_set(&err, "out of memory");
        tool_fail(prog, &err);
    }

    struct vmm_host host;
    if (states_known && !q.vmm.offline && vmm_host_info(&q.vmm, &host, &err) == 0)
        printf("host: %u CPUs, %llu MiB free of %llu MiB\n", host.cpus, host.free_kib / 1024,
               host.total_kib / 1024);
    rule(&cols, w);
    for (int k = 0; k < cols.n; k++)
        printf(" %*s |", (int)w[cols.col[k]], headers[cols.col[k]]);
    putchar('\n');
    rule(&cols, w);
    for (size_t i = 0; i < n; i++) {
        for (int k = 0; k < cols.n; k++)
            printf(" %*s |", (int)w[cols.col[k]],
                   cells[i][cols.col[k]] ? cells[i][cols.col[k]] : "?");
        putchar('\n');
        for (int k = 0; k < NCOLS; k++)
            free(cells[i][k]);
    }
    rule(&cols, w);
    free(cells);
    vmm_domains_free(before, nbefore);
    vmm_domains_free(doms, ndoms);
    free(vms);
    qubes_close(&q);
    return 0;
}
