/* qvm-prefs: list, read and change a VM's properties. */
#include <string.h>

#include "tool.h"

static const char *prog = "qvm-prefs";

static void usage(FILE *f)
{
    fprintf(f,
"Usage: %s [-l] NAME\n"
"  or:  %s -g NAME PROPERTY\n"
"  or:  %s -s NAME PROPERTY VALUE\n"
"List, get or set a VM's properties. Without -l/-g/-s the number of\n"
"arguments chooses: NAME lists, NAME PROPERTY gets, NAME PROPERTY VALUE sets.\n"
"\n"
"Settable: name label template netvm dispvm_netvm (NAME, none, default; the\n"
"latter: the netvm of the VM's DispVMs) memory maxmem (MiB,\n"
"at most the host's memory) vcpus (at most the host's CPUs) kernel (VERSION,\n"
"none, default) kernelopts (TEXT, default: nopat) pcidevs ('BB:DD.F ...' or a\n"
"list) mac (xx:xx:xx:xx:xx:xx or auto) debug autostart internal\n"
"include_in_backups (true, false, 1, 0, on, off) default_user qrexec_timeout\n"
"(seconds); for HVMs also drive (hd:VM:/PATH, cdrom:VM:/PATH, hd:/PATH for\n"
"hd:dom0:/PATH, /PATH for cdrom:dom0:/PATH, none) timezone (localtime or\n"
"seconds) qrexec_installed guiagent_installed seamless_gui_mode (needs\n"
"guiagent_installed). A rename moves the VM's files and a template's T-dvm.\n"
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
        mode = nargs == 1 ? 'l' : nargs == 2 ? 'g' : 's';
    int want = mode == 'l' ? 1 : mode == 'g' ? 2 : 3;
    if (nargs != want && !(mode == 's' && nargs > 3))
        tool_usage_error(prog, mode == 'l' ? "-l wants NAME" : mode == 'g' ? "-g wants NAME PROPERTY"
                                                                          : "-s wants NAME PROPERTY VALUE");
    const char *name = argv[optind];

    struct qubes q;
    struct qerr err;
    if (qubes_open(&q, offline, &err) < 0)
        tool_fail(prog, &err);
    int rc;
    if (mode == 's') {
        /* Several words make one value ("kernelopts" often has spaces). */
        size_t len = 0;
        for (int i = optind + 2; i < argc; i++)
            len += strlen(argv[i]) + 1;
        char *value = calloc(1, len + 1);
        for (int i = optind + 2; value && i < argc; i++) {
            if (i > optind + 2)
                strcat(value, " ");
            strcat(value, argv[i]);
        }
        struct qvm *vm;
        rc = qubes_load_for_writing(&q, false, &err);
        if (rc == 0 && !(vm = qubes_find_vm(&q, name, &err)))
            rc = qubes_commit(&q, -1, &err);
        else if (rc == 0)
            rc = qubes_prefs_set_and_save(&q, vm, argv[optind + 1], value ? value : "", &err);
        free(value);
    } else {
        const struct qvm *vm = NULL;
        rc = qubes_load_for_reading(&q, &err);
        if (rc == 0 && !(vm = qubes_find_vm(&q, name, &err)))
            rc = -1;
        if (rc == 0 && mode == 'l') {
            rc = qubes_prefs_list(&q, vm, stdout, &err);
        } else if (rc == 0) {
            char *v = qubes_prefs_get(&q, vm, argv[optind + 1], &err);
            if (v)
                puts(v);
            else
                rc = -1;
            free(v);
        }
    }
    if (rc < 0) {
        qubes_close(&q);
        tool_fail(prog, &err);
    }
    qubes_close(&q);
    return 0;
}
