/* qubes-dvmd: the DispVM service. */
#include "../../dispvm/dispvm.h"
#include "tool.h"

static const char *prog = "qubes-dvmd";

static void usage(FILE *f)
{
    fprintf(f,
"Usage: %s [--foreground | --stop]\n"
"The DispVM service of this host's run directory ($QUBES_RUN_DIR): it takes\n"
"the requests of qfile-daemon-dvm, qvm-run --dispvm and\n"
"qvm-create-default-dvm on $QUBES_RUN_DIR/dvmd.sock (root only) and makes\n"
"each DispVM in a worker process of its own, which gives it its identity\n"
"and destroys it when its request ends. It keeps as many preloaded DispVMs\n"
"of each template it serves as qubes-prefs dispvm-preload asks (qubes.xml\n"
"is looked at every second). The first request starts it, and it inherits\n"
"that request's environment (QUBES_BASE_DIR, QUBES_VMM_URI, the qrexec\n"
"policy settings of the DispVMs' qrexec-daemons); without DispVMs or\n"
"requests it ends after a minute. Messages go to $QUBES_RUN_DIR/dvmd.log;\n"
"it holds $QUBES_RUN_DIR/dvmd.lock (flock), which holds its pid.\n"
"\n"
"Options:\n"
"      --foreground   stay attached, messages on standard error\n"
"      --stop         stop the running service (its DispVMs go first)\n"
"      --version      show the version and the hypervisor backends\n"
"  -h, --help         show this help\n", prog);
}

int main(int argc, char **argv)
{
    tool_check_version(argc, argv);
    static const struct option opts[] = {
        { "foreground", no_argument, NULL, 'f' },
        { "stop", no_argument, NULL, 's' },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    bool foreground = false, stop = false;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'f': foreground = true; break;
        case 's': stop = true; break;
        case 'h': usage(stdout); return 0;
        default: tool_usage_error(prog, "bad option");
        }
    }
    if (optind != argc || (foreground && stop))
        tool_usage_error(prog, "expected --foreground or --stop, or nothing");
    struct qerr err;
    if (stop) {
        struct qubes_config cfg;
        if (qubes_config_init(&cfg, &err) < 0 || dispvm_service_end(&cfg, &err) < 0)
            tool_fail(prog, &err);
        return 0;
    }
    int rc = dispvm_service(foreground, &err);
    if (rc < 0)
        tool_fail(prog, &err);
    return 0;
}
