/* qvm-create-default-dvm: prepare the DispVM savefile of a template. */
#include <string.h>

#include "../../dispvm/dispvm.h"
#include "tool.h"

static const char *prog = "qvm-create-default-dvm";

static void usage(FILE *f)
{
    fprintf(f,
"Usage: %s [--host HOST] TEMPLATE | --default-template\n"
"Prepare the DispVM savefile of TEMPLATE: create the internal VM\n"
"TEMPLATE-dvm when missing, boot it, wait for its agent, save it, and put the\n"
"savefile and its disk snapshots in $QUBES_BASE_DIR/dvmdata (atomically: a\n"
"failed save leaves the old savefile usable).\n"
"With --host, the savefile is made on that registered host (qvm-host):\n"
"the VM TEMPLATE-dvm-HOST lives and is saved there, and the savefile and\n"
"its disk snapshots are volumes of its pool 'qubes' (nothing of them is\n"
"copied here but the savefile's header). TEMPLATE lives here (its root\n"
"image and kernel are sent there when they changed) or on that host.\n"
"qfile-daemon-dvm then restores DispVMs there.\n"
"\n"
"Options:\n"
"      --default-template  use the default template\n"
"      --host HOST         prepare it on that host (\"local\": this one)\n"
"  -q, --quiet             say nothing on success\n"
"      --version           show the version and the hypervisor backends\n"
"  -h, --help              show this help\n", prog);
}

int main(int argc, char **argv)
{
    tool_check_version(argc, argv);
    static const struct option opts[] = {
        { "default-template", no_argument, NULL, 'd' },
        { "quiet", no_argument, NULL, 'q' },
        { "host", required_argument, NULL, 'H' },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    bool dflt = false, quiet = false;
    const char *host = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
        switch (c) {
        case 'd': dflt = true; break;
        case 'q': quiet = true; break;
        case 'H': host = optarg; break;
        case 'h': usage(stdout); return 0;
        default: tool_usage_error(prog, "bad option");
        }
    }
    if (dflt ? optind != argc : optind != argc - 1)
        tool_usage_error(prog, "expected a template name or --default-template");
    struct qubes q;
    struct qerr err;
    if (qubes_open(&q, false, &err) < 0 ||
        dispvm_prepare_on(&q, dflt ? NULL : argv[optind], host, quiet ? NULL : stderr, &err) < 0) {
        qubes_close(&q);
        tool_fail(prog, &err);
    }
    qubes_close(&q);
    return 0;
}
