/* qvm-shutdown: ask a VM to power off and wait until it has. */
#include <string.h>

#include "../lifecycle.h"
#include "tool.h"

static const char *prog = "qvm-shutdown";

static void usage(FILE *f)
{
    fprintf(f,
"Usage: %s [options] NAME\n"
"Shut a VM down gracefully: its agent powers the guest off; wait until the\n"
"domain is gone.\n"
"\n"
"      --timeout S     give up after S seconds (default 60); qvm-kill then\n"
"                      stops the VM at once\n"
"      --force         shut a NetVM or ProxyVM down even while VMs behind it\n"
"                      run (they lose their network)\n"
"      --offline-mode  refused: stopping needs the hypervisor\n"
"  -q, --quiet         say nothing on success\n"
"  -h, --help          show this help\n", prog);
}

int main(int argc, char **argv)
{
    tool_check_version(argc, argv);
    static const struct option opts[] = {
        { "timeout", required_argument, NULL, 't' },
        { "force", no_argument, NULL, 'f' },
        { "offline-mode", no_argument, NULL, TOOL_OFFLINE_OPT },
        { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    bool offline = false, quiet = false, force = false;
    long timeout = 60;
    int c;
    while ((c = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
        switch (c) {
        case 't':
            if (qparse_int(optarg, 1, 86400, &timeout) < 0)
                tool_usage_error(prog, "--timeout wants seconds (1..86400)");
            break;
        case 'f': force = true; break;
        case TOOL_OFFLINE_OPT: offline = true; break;
        case 'q': quiet = true; break;
        case 'h': usage(stdout); return 0;
        default: tool_usage_error(prog, "bad option");
        }
    }
    if (optind != argc - 1)
        tool_usage_error(prog, "expected exactly one VM name");
    struct qubes q;
    struct qerr err;
    if (qubes_open(&q, offline, &err) < 0 ||
        qubes_vm_shutdown(&q, argv[optind], timeout * 1000, force, &err) < 0) {
        qubes_close(&q);
        tool_fail(prog, &err);
    }
    if (!quiet)
        fprintf(stderr, "--> %s is halted\n", argv[optind]);
    qubes_close(&q);
    return 0;
}
