/* qfile-daemon-dvm: run a service in a fresh DispVM, then destroy it. */
#include <string.h>

#include "../../dispvm/client.h"
#include "../util.h"
#include "../vm.h"
#include "../timing.h"
#include "tool.h"

static const char *prog = "qfile-daemon-dvm";

static void usage(FILE *f)
{
    fprintf(f,
"Usage: %s [options] SERVICE SOURCE_VM USER [LABEL]\n"
"Run SERVICE (e.g. qubes.VMShell) as USER (DEFAULT: the VM's default user)\n"
"in a fresh DispVM of the default template's savefile, with our input and\n"
"output, then have it destroyed and its record removed. The DispVM comes\n"
"from the DispVM service (qubes-dvmd, started when none runs): a preloaded\n"
"one when one waits, else one restored now, by a worker process that tears\n"
"it down once the service ended (or this process is gone); we exit with\n"
"the service's status meanwhile. SIGTERM, SIGINT and SIGHUP stop the\n"
"service; the DispVM still goes. A stale savefile is made again first.\n"
"Where other hosts are registered (qvm-host) and hold a savefile of the\n"
"template (qvm-create-default-dvm --host), the DispVM goes to the host with\n"
"a current savefile and the most free memory (less what its DispVMs may\n"
"still take); a host that does not answer in time is skipped, said.\n"
"\n"
"Options:\n"
"  -t, --template T     use T's savefile instead of the default template's\n"
"      --host HOST      restore it on that host (\"local\": this one)\n"
"      --no-regenerate  refuse a stale savefile instead of making it again\n"
"  -w, --wait-teardown  exit only once the DispVM is gone\n"
"  -q, --quiet          no progress messages\n"
"      --timings        each step's wall time, CPU time and page faults on\n"
"                       standard error, and the DispVM's emulator's threads'\n"
"                       (main, vCPU, other) before its teardown\n"
"      --version        show the version and the hypervisor backends\n"
"  -h, --help           show this help\n", prog);
}

int main(int argc, char **argv)
{
    tool_check_version(argc, argv);
    static const struct option opts[] = {
        { "template", required_argument, NULL, 't' },
        { "host", required_argument, NULL, 'H' },
        { "no-regenerate", no_argument, NULL, 'n' },
        { "wait-teardown", no_argument, NULL, 'w' },
        { "quiet", no_argument, NULL, 'q' },
        { "timings", no_argument, NULL, 'T' },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    struct dispvm_request r = { .regenerate = true, .progress = stderr };
    int c;
    while ((c = getopt_long(argc, argv, "t:qwh", opts, NULL)) != -1) {
        switch (c) {
        case 't': r.template_name = optarg; break;
        case 'H': r.host = optarg; break;
        case 'n': r.regenerate = false; break;
        case 'w': r.wait_teardown = true; break;
        case 'q': r.progress = NULL; break;
        case 'T': qtime_start(2, prog); break;
        case 'h': usage(stdout); return 0;
        default: tool_usage_error(prog, "bad option");
        }
    }
    int n = argc - optind;
    if (n < 3 || n > 4)
        tool_usage_error(prog, "expected SERVICE SOURCE_VM USER [LABEL]");
    r.service = argv[optind];
    r.source = argv[optind + 1];
    r.user = argv[optind + 2];
    r.label = n == 4 ? argv[optind + 3] : NULL;
    struct qerr err;
    qtime_mark("arguments");
    if (r.label && !qlabel_by_name(r.label))
        tool_usage_error(prog, "LABEL is one of red, orange, yellow, green, gray, blue, purple, black");
    if (strcmp(r.source, "dom0") != 0 && qvm_check_name(r.source, &err) < 0)
        tool_fail(prog, &err);
    if (r.host && strcmp(r.host, "local") != 0 && qvm_check_name(r.host, NULL) < 0)
        tool_usage_error(prog, "--host: not a host's name (letters, digits, '_', '-'; "
                         "qvm-host list shows them)");
    /* Only the paths: the service reads qubes.xml and talks to the
     * hypervisor, this process asks and runs the session. */
    struct qubes_config cfg;
    int status = 0;
    qensure_std_fds();
    if (qubes_config_init(&cfg, &err) < 0 || dispvm_run(&cfg, &r, &status, &err) < 0)
        tool_fail(prog, &err);
    return status;
}
