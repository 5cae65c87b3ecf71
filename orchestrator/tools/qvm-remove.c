/* qvm-remove: remove a VM's record and files. */
#include <getopt.h>
#include <string.h>

#include "tool.h"

static const char *prog = "qvm-remove";

static void usage(FILE *f)
{
    fprintf(f,
"Usage: %s [options] NAME\n"
"Remove a VM: its record in qubes.xml, its directory and its run directory.\n"
"A running VM, a template that VMs are based on, and a netvm in use are\n"
"refused.\n"
"\n"
"Options:\n"
"      --just-db       remove only the record, keep the files\n"
"      --offline-mode  do not contact the hypervisor (the VM is taken as halted)\n"
"  -q, --quiet         say nothing on success\n"
"      --version       show the version and the hypervisor backends\n"
"  -h, --help          show this help\n", prog);
}

int main(int argc, char **argv)
{
    tool_check_version(argc, argv);
    static const struct option opts[] = {
        { "just-db", no_argument, NULL, 'j' },
        { "offline-mode", no_argument, NULL, TOOL_OFFLINE_OPT },
        { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    bool just_db = false, offline = false, quiet = false;
    int c;
    while ((c = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
        switch (c) {
        case 'j': just_db = true; break;
        case TOOL_OFFLINE_OPT: offline = true; break;
        case 'q': quiet = true; break;
        case 'h': usage(stdout); return 0;
        default: tool_usage_error(prog, "bad option");
        }
    }
    if (optind != argc - 1)
        tool_usage_error(prog, "expected exactly one VM name");
    const char *name = argv[optind];

    struct qubes q;
    struct qerr err;
    bool had_savefile;
    if (qubes_open(&q, offline, &err) < 0 || qubes_load_for_writing(&q, false, &err) < 0 ||
        qubes_vm_remove(&q, name, just_db, &had_savefile, &err) < 0) {
        qubes_close(&q);
        tool_fail(prog, &err);
    }
    if (!quiet)
        printf("Removed '%s'%s%s\n", name, just_db ? " from the database (files kept)" : "",
               had_savefile ? " and its DispVM savefile" : "");
    qubes_close(&q);
    return 0;
}
