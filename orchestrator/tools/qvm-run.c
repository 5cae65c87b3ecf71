/* qvm-run: run a command in a VM, starting the VM when it is halted. */
#include <string.h>

#include "../../dispvm/dispvm.h"
#include "../lifecycle.h"
#include "tool.h"

static const char *prog = "qvm-run";

static void usage(FILE *f)
{
    fprintf(f,
"Usage: %s [options] NAME COMMAND...\n"
"       %s [options] --service SERVICE NAME\n"
"       %s [options] --dispvm[=TEMPLATE] COMMAND...\n"
"Run COMMAND (by /bin/sh -c inside the VM), or the VM's service SERVICE\n"
"(/etc/qubes-rpc/SERVICE, e.g. qubes.VMShell), and return its exit status.\n"
"A halted VM is started first. With --dispvm the command runs in a fresh\n"
"DispVM of TEMPLATE (default: the default template), destroyed afterwards.\n"
"\n"
"  -p, --pass-io       the command's input and output are ours\n"
"  -u, --user USER     run as USER (default: the VM's default_user)\n"
"  -s, --service NAME  run a service instead of a command\n"
"      --source VM     the VM that asks for the service (default dom0; the\n"
"                      service sees it as QREXEC_REMOTE_DOMAIN)\n"
"      --dispvm[=T]    run in a new DispVM (from T's savefile)\n"
"      --offline-mode  refused: this needs the hypervisor\n"
"  -q, --quiet         no progress messages when the VM must start\n"
"  -h, --help          show this help\n", prog, prog, prog);
}

/* The words from optind on, joined by spaces (malloc'ed). */
static char *join_args(int argc, char **argv, int from)
{
    size_t len = 1;
    for (int i = from; i < argc; i++)
        len += strlen(argv[i]) + 1;
    char *cmd = calloc(1, len);
    for (int i = from; cmd && i < argc; i++) {
        if (i > from)
            strcat(cmd, " ");
        strcat(cmd, argv[i]);
    }
    return cmd;
}

static int run_in_dispvm(int argc, char **argv, const char *tpl, bool quiet)
{
    if (argc - optind < 1)
        tool_usage_error(prog, "--dispvm wants a command");
    char *cmd = join_args(argc, argv, optind);
    struct dispvm_request r = { .command = cmd, .source = "dom0", .user = "DEFAULT",
                                .template_name = tpl, .regenerate = true,
                                .progress = quiet ? NULL : stderr };
    struct qubes q;
    struct qerr err;
    int status = 0;
    if (!cmd || qubes_open(&q, false, &err) < 0 || dispvm_run(&q, &r, &status, &err) < 0) {
        free(cmd);
        qubes_close(&q);
        tool_fail(prog, &err);
    }
    free(cmd);
    qubes_close(&q);
    return status;
}

int main(int argc, char **argv)
{
    tool_check_version(argc, argv);
    static const struct option opts[] = {
        { "pass-io", no_argument, NULL, 'p' },
        { "user", required_argument, NULL, 'u' },
        { "service", required_argument, NULL, 's' },
        { "source", required_argument, NULL, 'S' },
        { "dispvm", optional_argument, NULL, 'D' },
        { "offline-mode", no_argument, NULL, TOOL_OFFLINE_OPT },
        { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    bool offline = false, quiet = false, pass = false, dispvm = false;
    const char *dvm_template = NULL;
    struct qvm_run_opts o = { 0 };
    int c;
    /* '+': options end at the VM name, so the command keeps its own. */
    while ((c = getopt_long(argc, argv, "+pu:s:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'p': pass = true; break;
        case 'u': o.user = optarg; break;
        case 's': o.service = optarg; break;
        case 'S': o.source = optarg; break;
        case 'D':
            dispvm = true;
            dvm_template = optarg;
            break;
        case TOOL_OFFLINE_OPT: offline = true; break;
        case 'q': quiet = true; break;
        case 'h': usage(stdout); return 0;
        default: tool_usage_error(prog, "bad option");
        }
    }
    if (dispvm)
        return run_in_dispvm(argc, argv, dvm_template, quiet);
    if (o.service ? argc - optind != 1 : argc - optind < 2)
        tool_usage_error(prog, o.service ? "--service wants only a VM name"
                                         : "expected a VM name and a command");
    struct qerr err;
    if (o.source && strcmp(o.source, "dom0") != 0 && qvm_check_name(o.source, &err) < 0)
        tool_fail(prog, &err);
    char *cmd = join_args(argc, argv, optind + 1);
    if (!cmd)
        return 1;
    o.command = cmd;
    o.pass_io = pass;
    o.progress = quiet ? NULL : stderr;
    struct qubes q;
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
