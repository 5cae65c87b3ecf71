/* qvm-start: start a VM and wait until its agent answers. */
#include <string.h>

#include "../lifecycle.h"
#include "tool.h"

static const char *prog = "qvm-start";

static void usage(FILE *f)
{
    fprintf(f,
"Usage: %s [options] NAME\n"
"Start a VM: its domain on libvirt, then wait until the agent inside answers\n"
"(at most the VM's qrexec_timeout seconds). A template never starts while a\n"
"VM based on it runs, nor such a VM while its template runs.\n"
"\n"
"      --no-wait       return once the domain exists (the VM is Transient)\n"
"      --no-guid       do not start the VM's GUI: no monitor layout is sent\n"
"                      (else the host's, from xrandr -q, $QUBES_MONITOR_LAYOUT\n"
"                      or $QUBES_BASE_DIR/monitor-layout, W H X Y per line)\n"
"      --offline-mode  refused: starting needs the hypervisor\n"
"  -q, --quiet         say nothing on success\n"
"  -h, --help          show this help\n", prog);
}

int main(int argc, char **argv)
{
    tool_check_version(argc, argv);
    static const struct option opts[] = {
        { "no-wait", no_argument, NULL, 'w' },
        { "no-guid", no_argument, NULL, 'g' },
        { "offline-mode", no_argument, NULL, TOOL_OFFLINE_OPT },
        { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    bool offline = false, quiet = false;
    struct qvm_start_opts o = { .wait = true, .gui = true };
    int c;
    while ((c = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
        switch (c) {
        case 'w': o.wait = false; break;
        case 'g': o.gui = false; break;
        case TOOL_OFFLINE_OPT: offline = true; break;
        case 'q': quiet = true; break;
        case 'h': usage(stdout); return 0;
        default: tool_usage_error(prog, "bad option");
        }
    }
    if (optind != argc - 1)
        tool_usage_error(prog, "expected exactly one VM name");
    o.progress = quiet ? NULL : stderr;
    struct qubes q;
    struct qerr err;
    if (qubes_open(&q, offline, &err) < 0 || qubes_vm_start(&q, argv[optind], &o, &err) < 0) {
        qubes_close(&q);
        tool_fail(prog, &err);
    }
    qubes_close(&q);
    return 0;
}
