/* qvm-ls: list the VMs of the database with their power state. */
#include <getopt.h>
#include <string.h>
#include <unistd.h>

#include "../memuse.h"
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
"      --raw-list       print only the names, one per line (no hypervisor access)\n"
"  -c, --cpu-interval MS  add each running VM's CPU use over MS milliseconds\n"
"                       (100 = one CPU busy all along; from two samples)\n"
"  -m, --memory         for each running VM, the memory of its emulator process\n"
"                       (from /proc/PID/smaps, KiB rounded to MiB): PSS, what is\n"
"                       private to it, and what it shares with its DispVM\n"
"                       template's memory file (mapped, never written)\n"
"      --offline-mode   do not contact the hypervisor (every VM shows Halted)\n"
"  -h, --help           show this help\n", prog);
}

/* qvm-ls --memory: one line per running VM whose emulator process we find. */
static int memory_table(struct qubes *q, struct qvm **vms, size_t n, const struct vmm_domain *doms,
                        size_t ndoms)
{
    printf("%-31s %8s %8s %8s  %s\n", "name", "PSS MiB", "private", "shared", "memory");
    for (size_t i = 0; i < n; i++) {
        const struct vmm_domain *dom = NULL;
        for (size_t k = 0; k < ndoms; k++)
            if (strcmp(doms[k].name, vms[i]->name) == 0 && doms[k].id >= 0)
                dom = &doms[k];
        int pid = dom ? vmm_domain_pid(&q->vmm, vms[i]->name) : 0;
        struct qvm_memuse m;
        if (pid <= 0 || qvm_memuse(pid, &m) < 0)
            continue;
        printf("%-31s %8.1f %8.1f %8.1f  %s\n", vms[i]->name, m.pss_kib / 1024.0,
               m.private_kib / 1024.0, m.shared_kib / 1024.0,
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

enum { COL_NAME, COL_ON, COL_STATE, COL_UPDBL, COL_TYPE, COL_TEMPLATE, COL_NETVM, COL_LABEL,
       COL_MEM, COL_CPU, COL_PCT, NCOLS };
static const char *const headers[NCOLS] = { "name", "on", "state", "updbl", "type", "template",
                                            "netvm", "label", "mem MiB", "cpu s", "cpu %" };
static int ncols = NCOLS - 1;   /* the last one with --cpu-interval */

static void rule(const size_t *w)
{
    for (int i = 0; i < ncols; i++) {
        for (size_t k = 0; k < w[i] + 2; k++)
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
        { "cpu-interval", required_argument, NULL, 'c' },
        { "offline-mode", no_argument, NULL, TOOL_OFFLINE_OPT },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    bool raw = false, offline = false, memory = false;
    long interval = 0;
    int c;
    while ((c = getopt_long(argc, argv, "hmc:", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            if (qparse_int(optarg, 1, 60000, &interval) < 0)
                tool_usage_error(prog, "--cpu-interval takes milliseconds, 1..60000");
            ncols = NCOLS;
            break;
        case 'r': raw = true; break;
        case 'm': memory = true; break;
        case TOOL_OFFLINE_OPT: offline = true; break;
        case 'h': usage(stdout); return 0;
        default: tool_usage_error(prog, "bad option");
        }
    }
    if (optind != argc)
        tool_usage_error(prog, "no arguments expected");

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
        const struct qvm *vm = vms[i];
        enum qvm_power st = states_known ? QVM_POWER_HALTED : QVM_POWER_NA;
        const struct vmm_domain *dom = NULL;
        if (vm->cls == QVM_ADMIN)
            st = QVM_POWER_RUNNING;
        else
            for (size_t k = 0; k < ndoms; k++)
                if (strcmp(doms[k].name, vm->name) == 0) {
                    dom = &doms[k];
                    st = qubes_refine_power(&q, vm, dom);
                }
        const struct qvm *tpl = vm->template_qid >= 0 ? qvm_collection_by_qid(q.coll, vm->template_qid) : NULL;
        const struct qvm *net = vm->netvm_qid >= 0 ? qvm_collection_by_qid(q.coll, vm->netvm_qid) : NULL;
        bool is_tpl = qvm_class_is_template(vm->cls), is_net = qvm_class_is_netvm(vm->cls);
        const char *type = is_tpl ? "Tpl" : vm->cls == QVM_HVM ? "HVM" : vm->cls == QVM_PROXY ? "Proxy"
                         : vm->cls == QVM_NET ? "Net" : vm->cls == QVM_DISP ? "Disp" : "";
        if (vm->cls == QVM_TEMPLATE_HVM)
            type = "TplHVM";
        char *cell[NCOLS] = { 0 };
        if (asprintf(&cell[COL_NAME], "%s%s%s", is_tpl ? "[" : is_net ? "{" : "", vm->name,
                     is_tpl ? "]" : is_net ? "}" : "") < 0)
            cell[COL_NAME] = NULL;
        cell[COL_ON] = strdup(qvm_power_is_running(st) ? "*" : "");
        cell[COL_STATE] = strdup(qvm_power_name(st));
        cell[COL_UPDBL] = strdup(vm->cls != QVM_ADMIN && vm->cls != QVM_DISP &&
                                 (is_tpl || !tpl) ? "Yes" : "");
        cell[COL_TYPE] = strdup(type);
        cell[COL_TEMPLATE] = strdup(vm->cls == QVM_ADMIN || is_tpl || !tpl ? "n/a" : tpl->name);
        if (vm->cls == QVM_ADMIN || vm->cls == QVM_NET)
            cell[COL_NETVM] = strdup("n/a");
        else if (asprintf(&cell[COL_NETVM], "%s%s",
                          net && qvm_get_bool(vm, "uses_default_netvm", false) ? "*" : "",
                          net ? net->name : "-") < 0)
            cell[COL_NETVM] = NULL;
        cell[COL_LABEL] = strdup(vm->label ? vm->label->name : "");
        if (dom && dom->id >= 0) {
            if (asprintf(&cell[COL_MEM], "%lu", dom->mem_kib / 1024) < 0)
                cell[COL_MEM] = NULL;
            if (asprintf(&cell[COL_CPU], "%.1f", dom->cpu_ns / 1e9) < 0)
                cell[COL_CPU] = NULL;
        } else {
            cell[COL_MEM] = strdup("-");
            cell[COL_CPU] = strdup("-");
        }
        const struct vmm_domain *was = NULL;
        for (size_t k = 0; dom && dom->id >= 0 && k < nbefore; k++)
            if (strcmp(before[k].name, vm->name) == 0 && before[k].id == dom->id)
                was = &before[k];
        if (was && elapsed > 0 && dom->cpu_ns >= was->cpu_ns) {
            if (asprintf(&cell[COL_PCT], "%.1f",
                         (double)(dom->cpu_ns - was->cpu_ns) / ((double)elapsed * 1e4)) < 0)
                cell[COL_PCT] = NULL;
        } else {
            cell[COL_PCT] = strdup("-");
        }
        for (int k = 0; k < NCOLS; k++) {
            cells[i][k] = cell[k];
            if (cell[k] && strlen(cell[k]) > w[k])
                w[k] = strlen(cell[k]);
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
    rule(w);
    for (int k = 0; k < ncols; k++)
        printf(" %*s |", (int)w[k], headers[k]);
    putchar('\n');
    rule(w);
    for (size_t i = 0; i < n; i++) {
        for (int k = 0; k < NCOLS; k++) {
            if (k < ncols)
                printf(" %*s |", (int)w[k], cells[i][k] ? cells[i][k] : "?");
            free(cells[i][k]);
        }
        putchar('\n');
    }
    rule(w);
    free(cells);
    vmm_domains_free(before, nbefore);
    vmm_domains_free(doms, ndoms);
    free(vms);
    qubes_close(&q);
    return 0;
}
