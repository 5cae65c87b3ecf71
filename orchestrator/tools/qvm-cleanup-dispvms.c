/* qvm-cleanup-dispvms: remove what DispVMs left behind. */
#include "../../dispvm/dispvm.h"
#include "tool.h"

static const char *prog = "qvm-cleanup-dispvms";

static void usage(FILE *f)
{
    fprintf(f,
"Usage: %s [options]\n"
"At host start or after a crash: drop the records of DispVMs that do not run,\n"
"destroy DispVM domains that have no record, and remove their files.\n"
"\n"
"Options:\n"
"  -q, --quiet  say nothing\n"
"      --version show the version and the hypervisor backends\n"
"  -h, --help   show this help\n", prog);
}

int main(int argc, char **argv)
{
    tool_check_version(argc, argv);
    static const struct option opts[] = {
        { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    bool quiet = false;
    int c;
    while ((c = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
        switch (c) {
        case 'q': quiet = true; break;
        case 'h': usage(stdout); return 0;
        default: tool_usage_error(prog, "bad option");
        }
    }
    if (optind != argc)
        tool_usage_error(prog, "no arguments expected");
    struct qubes q;
    struct qerr err;
    int removed;
    if (qubes_open(&q, false, &err) < 0 ||
        dispvm_cleanup(&q, &removed, quiet ? NULL : stderr, &err) < 0) {
        qubes_close(&q);
        tool_fail(prog, &err);
    }
    if (!quiet)
        fprintf(stderr, "%d cleaned up\n", removed);
    qubes_close(&q);
    return 0;
}
