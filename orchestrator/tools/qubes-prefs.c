/* qubes-prefs: the global defaults of the database. */
#include <string.h>

#include "tool.h"

static const char *prog = "qubes-prefs";

static void usage(FILE *f)
{
    fprintf(f,
"Usage: %s [-l]\n"
"  or:  %s [-g] PROPERTY\n"
"  or:  %s -s PROPERTY VALUE\n"
"List, get or set the global defaults: default-template, default-netvm,\n"
"default-fw-netvm, updatevm, clockvm (a VM name or none) and default-kernel\n"
"(an installed kernel version or none), dispvm-preload (how many DispVMs to\n"
"keep restored and paused, 0..16), dispvm-memory (how a DispVM's RAM is\n"
"restored: auto, shared or full).\n"
"\n"
"Options:\n"
"  -l, --list          list every property\n"
"  -g, --get           print one property\n"
"  -s, --set           change one property\n"
"      --offline-mode  do not contact the hypervisor\n"
"      --version       show the version and the hypervisor backends\n"
"  -h, --help          show this help\n", prog, prog, prog);
}

int main(int argc, char **argv)
{
    tool_check_version(argc, argv);
    bool offline = false;
    int mode = tool_prefs_options(argc, argv, prog, usage, &offline);
    int nargs = argc - optind;
    if (!mode)
        mode = nargs == 0 ? 'l' : nargs == 1 ? 'g' : 's';
    if ((mode == 'l' && nargs != 0) || (mode == 'g' && nargs != 1) || (mode == 's' && nargs != 2))
        tool_usage_error(prog, mode == 'l' ? "-l takes no arguments"
                               : mode == 'g' ? "-g wants PROPERTY" : "-s wants PROPERTY VALUE");

    struct qubes q;
    struct qerr err;
    int rc = qubes_open(&q, offline, &err);
    if (rc == 0 && mode == 's') {
        rc = qubes_load_for_writing(&q, false, &err);
        if (rc == 0 && qubes_global_set(&q, argv[optind], argv[optind + 1], &err) < 0)
            rc = -1;
        if (rc == 0)
            rc = qubes_save_and_unlock(&q, &err);
    } else if (rc == 0) {
        rc = qubes_load_for_reading(&q, &err);
        if (rc == 0 && mode == 'l') {
            rc = qubes_global_list(&q, stdout, &err);
        } else if (rc == 0) {
            char *v = qubes_global_get(&q, argv[optind], &err);
            if (v)
                puts(v);
            else
                rc = -1;
            free(v);
        }
    }
    qubes_close(&q);
    if (rc < 0)
        tool_fail(prog, &err);
    return 0;
}
