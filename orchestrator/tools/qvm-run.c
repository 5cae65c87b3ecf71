/* qvm-run: run a command in a VM, starting the VM when it is halted. */
#include <string.h>

#include "../lifecycle.h"
#include "tool.h"

static const char *prog = "qvm-run";

static void usage(FILE *f)
{
    fprintf(f,
"Usage: %s [options] NAME COMMAND...\n"
"       %s [options] --service SERVICE NAME\n"
"Run COMMAND (by /bin/sh -c inside the VM), or the VM's service SERVICE\n"
"(/etc/qubes-rpc/SERVICE, e.g. qubes.VMShell), and return its exit status.\n"
"A halted VM is started first.\n"
"\n"
"  -p, --pass-io       the command's input and output are ours\n"
"  -u, --user USER     run as USER (default: the VM's default_user)\n"
"  -s, --service NAME  run a service instead of a command\n"
"      --offline-mode  refused: this needs the hypervisor\n"
"  -q, --quiet         no progress messages when the VM must start\n"
"  -h, --help          show this help\n", prog, prog);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "pass-io", no_argument, NULL, 'p' },
        { "user", required_argument, NULL, 'u' },
        { "service", required_argument, NULL, 's' },
        { "offline-mode", no_argument, NULL, TOOL_OFFLINE_OPT },
        { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    bool offline = false, quiet = false, pass = false;
    struct qvm_run_opts o = { 0 };
    int c;
    /* '+': options end at the VM name, so the command keeps its own. */
    while ((c = getopt_long(argc, argv, "+pu:s:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'p': pass = true; break;
        case 'u': o.user = optarg; break;
        case 's': o.service = optarg; break;
        case TOOL_OFFLINE_OPT: offline = true; break;
        case 'q': quiet = true; break;
        case 'h': usage(stdout); return 0;
        default: tool_usage_error(prog, "bad option");
        }
    }
    if (o.service ? argc - optind != 1 : argc - optind < 2)
        tool_usage_error(prog, o.service ? "--service wants only a VM name"
                                         : "expected a VM name and a command");
    size_t len = 1;
    for (int i = optind + 1; i < argc; i++)
        len += strlen(argv[i]) + 1;
    char *cmd = calloc(1, len);
    if (!cmd)
        return 1;
    for (int i = optind + 1; i < argc; i++) {
        if (i > optind + 1)
            strcat(cmd, " ");
        strcat(cmd, argv[i]);
    }
    o.command = cmd;
    o.pass_io = pass;
    o.progress = quiet ? NULL : stderr;
    struct qubes q;
    struct qerr err;
    int status = 0;
    if (qubes_open(&q, offline, &err) < 0 || qubes_vm_run(&q, argv[optind], &o, &status, &err) < 0) {
        free(cmd);
        qubes_close(&q);
        tool_fail(prog, &err);
    }
    free(cmd);
    qubes_close(&q);
    return status;
}
