/* qfile-daemon-dvm: run a service in a fresh DispVM, then destroy it. */
#include <string.h>

#include "../../dispvm/dispvm.h"
#include "tool.h"

static const char *prog = "qfile-daemon-dvm";

static void usage(FILE *f)
{
    fprintf(f,
"Usage: %s [options] SERVICE SOURCE_VM USER [LABEL]\n"
"Restore a fresh DispVM from the default template's savefile, run SERVICE\n"
"(e.g. qubes.VMShell) in it as USER (DEFAULT: the VM's default user) with\n"
"our input and output, then destroy it and remove its record. Exits with the\n"
"service's status as soon as the service ends: the DispVM is torn down by a\n"
"detached process (errors in $QUBES_RUN_DIR/dispvm-teardown.log). SIGTERM,\n"
"SIGINT and SIGHUP stop the service and clean up before exiting. A stale\n"
"savefile is made again first.\n"
"\n"
"  -t, --template T     use T's savefile instead of the default template's\n"
"      --no-regenerate  refuse a stale savefile instead of making it again\n"
"  -w, --wait-teardown  exit only once the DispVM is gone\n"
"  -q, --quiet          no progress messages\n"
"  -h, --help           show this help\n", prog);
}

int main(int argc, char **argv)
{
    tool_check_version(argc, argv);
    static const struct option opts[] = {
        { "template", required_argument, NULL, 't' },
        { "no-regenerate", no_argument, NULL, 'n' },
        { "wait-teardown", no_argument, NULL, 'w' },
        { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    struct dispvm_request r = { .regenerate = true, .progress = stderr };
    int c;
    while ((c = getopt_long(argc, argv, "t:qwh", opts, NULL)) != -1) {
        switch (c) {
        case 't': r.template_name = optarg; break;
        case 'n': r.regenerate = false; break;
        case 'w': r.wait_teardown = true; break;
        case 'q': r.progress = NULL; break;
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
    if (r.label && !qlabel_by_name(r.label))
        tool_usage_error(prog, "LABEL is one of red, orange, yellow, green, gray, blue, purple, black");
    if (strcmp(r.source, "dom0") != 0 && qvm_check_name(r.source, &err) < 0)
        tool_fail(prog, &err);
    struct qubes q;
    int status = 0;
    if (qubes_open(&q, false, &err) < 0 || dispvm_run(&q, &r, &status, &err) < 0) {
        qubes_close(&q);
        tool_fail(prog, &err);
    }
    qubes_close(&q);
    return status;
}
