/* qvm-shutdown: ask a VM, or every VM, to power off and wait until it has. */
#include <string.h>

#include "../../dispvm/dispvm.h"
#include "../lifecycle.h"
#include "tool.h"

static const char *prog = "qvm-shutdown";

static void usage(FILE *f)
{
    fprintf(f,
"Usage: %s [options] NAME\n"
"  or:  %s [options] --all [--exclude VM]...\n"
"Shut a VM down gracefully: its agent powers the guest off; wait until the\n"
"domain is gone.\n"
"\n"
"Options:\n"
"      --all           every VM that runs but dom0. DispVMs go first, with the\n"
"                      DispVM service (as qubes-dvmd --stop: no preload takes\n"
"                      their place); then each VM before the netvm it uses, as\n"
"                      soon as the last VM behind that netvm is halted. A VM\n"
"                      that is refused (paused) or does not stop within the\n"
"                      timeout is named and stays, with its netvm; the others\n"
"                      still go\n"
"      --exclude VM    with --all: leave VM running (may be repeated); a\n"
"                      DispVM left out keeps the DispVM service and its DispVMs\n"
"      --wait          wait until halted: always done (the original needed it)\n"
"      --timeout S     give up on a VM after S seconds (default 60); qvm-kill\n"
"                      then stops it at once\n"
"      --force         shut a NetVM or ProxyVM down even while VMs behind it\n"
"                      run (they lose their network)\n"
"      --offline-mode  refused: stopping needs the hypervisor\n"
"  -q, --quiet         say nothing on success\n"
"      --version       show the version and the hypervisor backends\n"
"  -h, --help          show this help\n", prog, prog);
}

/* The VMs --exclude names exist (checked before anything stops); *disp:
 * one is a DispVM, and the DispVM service stays. */
static int check_excludes(struct qubes *q, char **exclude, size_t n, bool *disp,
                          struct qerr *err)
{
    *disp = false;
    if (qubes_load_for_reading(q, err) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        struct qvm *vm = qubes_find_vm(q, exclude[i], err);
        if (!vm)
            return qerr_prefix(err, "cannot leave out '%s'", exclude[i]);
        *disp |= vm->cls == QVM_DISP;
    }
    return 0;
}

static int shutdown_all(struct qubes *q, char **exclude, size_t n, long timeout, bool force,
                        bool quiet, struct qerr *err)
{
    bool keep_dispvms;
    if (q->vmm.offline && vmm_require(&q->vmm, err) < 0)
        return qerr_prefix(err, "cannot shut anything down");
    if (check_excludes(q, exclude, n, &keep_dispvms, err) < 0 ||
        (!keep_dispvms && dispvm_service_end(&q->cfg, err) < 0))
        return -1;
    return qubes_vm_shutdown_all(q, (const char *const *)exclude, n, timeout * 1000, force,
                                 quiet ? NULL : stderr, err);
}

int main(int argc, char **argv)
{
    tool_check_version(argc, argv);
    static const struct option opts[] = {
        { "timeout", required_argument, NULL, 't' },
        { "force", no_argument, NULL, 'f' },
        { "all", no_argument, NULL, 'A' },
        { "exclude", required_argument, NULL, 'x' },
        { "wait", no_argument, NULL, 'w' },
        { "offline-mode", no_argument, NULL, TOOL_OFFLINE_OPT },
        { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    bool offline = false, quiet = false, force = false, all = false;
    long timeout = 60;
    char *exclude[argc];           /* --exclude, at most one per argument */
    size_t nexclude = 0;
    int c;
    while ((c = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
        switch (c) {
        case 't':
            if (qparse_int(optarg, 1, 86400, &timeout) < 0)
                tool_usage_error(prog, "--timeout wants seconds (1..86400)");
            break;
        case 'f': force = true; break;
        case 'A': all = true; break;
        case 'x': exclude[nexclude++] = optarg; break;
        case 'w': break;
        case TOOL_OFFLINE_OPT: offline = true; break;
        case 'q': quiet = true; break;
        case 'h': usage(stdout); return 0;
        default: tool_usage_error(prog, "bad option");
        }
    }
    if (nexclude && !all)
        tool_usage_error(prog, "--exclude goes with --all");
    if (all ? optind != argc : optind != argc - 1)
        tool_usage_error(prog, all ? "--all takes no VM name" : "expected exactly one VM name");
    struct qubes q;
    struct qerr err;
    int rc = qubes_open(&q, offline, &err);
    if (rc == 0)
        rc = all ? shutdown_all(&q, exclude, nexclude, timeout, force, quiet, &err)
                 : qubes_vm_shutdown(&q, argv[optind], timeout * 1000, force, &err);
    qubes_close(&q);
    if (rc < 0)
        tool_fail(prog, &err);
    if (!quiet && !all)
        fprintf(stderr, "--> %s is halted\n", argv[optind]);
    return 0;
}
