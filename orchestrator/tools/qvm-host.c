/* qvm-host: the hosts VMs may live on (orchestrator/hosts.h). */
#include <string.h>

#include "../hosts.h"
#include "tool.h"

static const char *prog = "qvm-host";

static void usage(FILE *f)
{
    fprintf(f,
"Usage: %s [options] list\n"
"  or:  %s [options] add NAME URI\n"
"  or:  %s [options] remove NAME\n"
"The hosts VMs may live on besides this one, each a libvirt daemon reached\n"
"through its remote URI (qemu+tls://HOST/system, qemu+ssh://USER@HOST/system,\n"
"qemu+tcp://HOST:PORT/system). The registry is $QUBES_BASE_DIR/%s,\n"
"changed under the qubes.xml write lock; the local host (%s, at\n"
"$QUBES_VMM_URI) is implicit.\n"
"\n"
"list shows each host with its URI and asks every one at once whether it\n"
"answers, its free and total memory and how many of the database's VMs run\n"
"there; a host that does not answer within the timeout is listed so (with\n"
"--offline-mode none is asked). add checks the name and the URI only: a\n"
"host may be registered before its daemon runs. remove forgets a host; it is\n"
"refused while VMs live there (qvm-create --host).\n"
"\n"
"Options:\n"
"      --timeout S     list: wait at most S seconds for the hosts (default 5)\n"
"      --offline-mode  list: ask no host\n"
"  -q, --quiet         say nothing on success\n"
"      --version       show the version and the hypervisor backends\n"
"  -h, --help          show this help\n", prog, prog, prog, QHOSTS_FILE, QHOST_LOCAL);
}

static int list(struct qubes *q, long timeout_s, struct qerr *err)
{
    char path[PATH_MAX];
    struct qhosts h;
    /* qubes.xml only to count the VMs running on each host: offline, no. */
    if (qhosts_path(&q->cfg, path, sizeof path, err) < 0 || qhosts_load(path, &h, err) < 0 ||
        (!q->cfg.offline && qubes_load_for_reading(q, err) < 0))
        return -1;
    size_t n = h.n + 1;
    const char *uris[QHOSTS_MAX + 1], *names[QHOSTS_MAX + 1];
    names[0] = QHOST_LOCAL;
    uris[0] = q->cfg.vmm_uri;
    for (size_t i = 0; i < h.n; i++) {
        names[i + 1] = h.host[i].name;
        uris[i + 1] = h.host[i].uri;
    }
    struct qhost_state st[QHOSTS_MAX + 1];
    if (!q->cfg.offline)
        qhosts_probe(&q->cfg, q->coll, uris, n, timeout_s * 1000, st);
    int w = 12;
    for (size_t i = 0; i < n; i++)
        if ((int)strlen(names[i]) > w)
            w = (int)strlen(names[i]);
    printf("%-*s %-40s %-9s %10s %10s %7s\n", w, "host", "uri", "reachable", "free MiB",
           "total MiB", "running");
    for (size_t i = 0; i < n; i++) {
        printf("%-*s ", w, names[i]);
        qprint_text(stdout, uris[i]);
        int pad = 40 - (int)strlen(uris[i]);
        printf("%*s ", pad > 0 ? pad : 0, "");
        if (q->cfg.offline)
            printf("%-9s %10s %10s %7s\n", "-", "-", "-", "-");
        else if (st[i].reachable)
            printf("%-9s %10llu %10llu %7u\n", "yes", st[i].free_kib / 1024, st[i].total_kib / 1024,
                   st[i].running);
        else {
            printf("%-9s %10s %10s %7s  ", "no", "-", "-", "-");
            qprint_text(stdout, st[i].why);
            printf("\n");
        }
    }
    return 0;
}

/* add and remove: one write transaction over qubes.xml and the registry. */
static int change(struct qubes *q, const char *name, const char *uri, struct qerr *err)
{
    char path[PATH_MAX];
    struct qhosts h;
    if (qhosts_path(&q->cfg, path, sizeof path, err) < 0 ||
        qubes_load_for_writing(q, true, err) < 0)
        return -1;
    int rc = qhosts_load(path, &h, err);
    const char *who;
    if (rc == 0 && !uri && qhosts_in_use(q->coll, name, &who))
        rc = qerr_set(err, "cannot remove host '%s': VMs live there ('%s'; qvm-remove them "
                      "first)", name, who);
    if (rc == 0)
        rc = uri ? qhosts_add(&h, name, uri, err) : qhosts_remove(&h, name, err);
    if (rc == 0)
        rc = qhosts_write(&q->db, path, &h, err);
    return qubes_commit(q, rc < 0 ? rc : QUBES_UNCHANGED, err);
}

int main(int argc, char **argv)
{
    tool_check_version(argc, argv);
    static const struct option opts[] = {
        { "timeout", required_argument, NULL, 't' },
        { "offline-mode", no_argument, NULL, TOOL_OFFLINE_OPT },
        { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    bool offline = false, quiet = false;
    long timeout = 5;
    int c;
    while ((c = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
        switch (c) {
        case 't':
            if (qparse_int(optarg, 1, 3600, &timeout) < 0)
                tool_usage_error(prog, "--timeout takes seconds, 1..3600");
            break;
        case TOOL_OFFLINE_OPT: offline = true; break;
        case 'q': quiet = true; break;
        case 'h': usage(stdout); return 0;
        default: tool_usage_error(prog, "bad option");
        }
    }
    int left = argc - optind;
    const char *cmd = left > 0 ? argv[optind] : "list";
    if (strcmp(cmd, "list") == 0 ? left > 1
        : strcmp(cmd, "add") == 0 ? left != 3
        : strcmp(cmd, "remove") == 0 ? left != 2 : 1)
        tool_usage_error(prog, "expected list, add NAME URI or remove NAME");
    struct qubes q;
    struct qerr err;
    int rc = qubes_open(&q, offline, &err);
    if (rc == 0 && strcmp(cmd, "list") == 0)
        rc = list(&q, timeout, &err);
    else if (rc == 0)
        rc = change(&q, argv[optind + 1], strcmp(cmd, "add") == 0 ? argv[optind + 2] : NULL, &err);
    qubes_close(&q);
    if (rc < 0)
        tool_fail(prog, &err);
    if (!quiet && strcmp(cmd, "list") != 0)
        fprintf(stderr, "%s: host '%s' %s\n", prog, argv[optind + 1],
                strcmp(cmd, "add") == 0 ? "added" : "removed");
    return 0;
}
