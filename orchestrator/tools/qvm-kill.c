/* qvm-kill: Stop a VM at once (its domain is destroyed). */
#include "../lifecycle.h"
#include "tool.h"

static const char *prog = "qvm-kill";

static void usage(FILE *f)
{
    fprintf(f,
"Usage: %s [options] NAME\n"
"Stop a VM at once (its domain is destroyed).\n"
"\n"
"      --offline-mode  refused: this needs the hypervisor\n"
"  -h, --help          show this help\n", prog);
}

int main(int argc, char **argv)
{
    bool offline = tool_simple_options(argc, argv, prog, usage, 1, "expected exactly one VM name");
    struct qubes q;
    struct qerr err;
    if (qubes_open(&q, offline, &err) < 0 || qubes_vm_kill(&q, argv[optind], &err) < 0) {
        qubes_close(&q);
        tool_fail(prog, &err);
    }
    qubes_close(&q);
    return 0;
}
