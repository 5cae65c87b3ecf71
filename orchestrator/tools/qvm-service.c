/* qvm-service: list and change the services of a VM (its `services` dict in
 * qubes.xml), which its guest receives at start. */
#include <string.h>

#include "../pyliteral.h"
#include "tool.h"

static const char *prog = "qvm-service";

static void usage(FILE *f)
{
    fprintf(f,
"Usage: %s [-l] NAME\n"
"  or:  %s -e|-d|-D NAME SERVICE\n"
"List (the default) or change the services of the VM NAME: the guest services\n"
"dom0 turns on or off for it. A VM learns them when it starts (a running VM at\n"
"its next start; a DispVM has those its DispVM template booted with); a service\n"
"not listed is the VM's to decide. Kept in qubes.xml (the VM's `services`),\n"
"changed under its write lock and saved atomically; no hypervisor is needed.\n"
"A SERVICE name is 1 to %d of [A-Za-z0-9_.-], not starting with '.' or '-'.\n"
"\n"
"Options:\n"
"  -l, --list          list the services and whether each is on or off\n"
"  -e, --enable        turn SERVICE on\n"
"  -d, --disable       turn SERVICE off\n"
"  -D, --default       forget SERVICE: the VM decides (also --delete, --unset)\n"
"      --offline-mode  do not contact the hypervisor (this tool never does)\n"
"      --version       show the version and the hypervisor backends\n"
"  -h, --help          show this help\n", prog, prog, QSERVICE_NAME_MAX);
}

static void list(const struct qvm *vm)
{
    const char *text = qvm_get_attr(vm, "services");
    struct pydict d = { 0 };
    struct qerr err;
    if (text && pydict_parse(text, &d, &err) < 0)
        tool_fail(prog, &err);          /* the loader checked it: not reached */
    if (d.n == 0) {
        printf("'%s' has no services set: the VM decides about each\n", vm->name);
        return;
    }
    int width = 0;
    for (size_t i = 0; i < d.n; i++) {
        int len = (int)strlen(d.items[i].key);
        width = len > width ? len : width;
    }
    for (size_t i = 0; i < d.n; i++) {
        const struct pyval *v = &d.items[i].val;
        qprint_text(stdout, d.items[i].key);
        printf("%*s  %s", width - (int)strlen(d.items[i].key), "", pyval_truth(v) ? "on" : "off");
        if (v->type == PYV_INT)
            printf(" (value %lld)", v->i);
        else if (v->type == PYV_NONE)
            printf(" (value None)");
        else if (v->type == PYV_STR) {
            printf(" (value '");
            qprint_text(stdout, v->s);
            printf("')");
        }
        if (qservice_check_name(d.items[i].key, &err) < 0)
            printf(" (not passed to the VM: not a service name)");
        putchar('\n');
    }
    pydict_free(&d);
}

/* The write transaction's body: 0 when `services` changed, QUBES_UNCHANGED
 * when it already said so. */
static int change(struct qubes *q, const char *name, int mode, const char *service,
                  struct qerr *err)
{
    struct qvm *vm = qubes_find_vm(q, name, err);
    if (!vm)
        return -1;
    if (vm->cls == QVM_ADMIN)
        return qerr_set(err, "dom0 is not started by these tools: it has no services to set");
    if (vm->cls == QVM_DISP)
        return qerr_set(err, "'%s' is a DispVM: it has the services its DispVM template booted "
                        "with (change that VM's and make its savefile again)", name);
    const char *text = qvm_get_attr(vm, "services");
    if (!text)
        text = "{}";
    struct pyval v = { .type = PYV_BOOL, .b = mode == 'e' };
    cleanup_free char *edited = NULL;
    if (pydict_edit(text, service, mode == 'D' ? NULL : &v, &edited, err) < 0)
        return qerr_prefix(err, "services of '%s'", name);
    if (strcmp(edited, text) == 0) {
        /* -D of a key that is not there: fine for a name, an error else. */
        if (mode == 'D' && qservice_check_name(service, err) < 0)
            return -1;
        return QUBES_UNCHANGED;
    }
    if (mode != 'D') {
        struct pydict d;
        char arg[QSERVICES_ARG_MAX + 1];
        if (pydict_parse(edited, &d, err) < 0)
            return -1;
        int rc = qservices_cmdline(&d, arg, err);
        pydict_free(&d);
        if (rc < 0)
            return qerr_prefix(err, "'%s'", name);
    }
    return qvm_set_attr(vm, "services", edited, err);
}

int main(int argc, char **argv)
{
    tool_check_version(argc, argv);
    static const struct option opts[] = {
        { "list", no_argument, NULL, 'l' },
        { "enable", no_argument, NULL, 'e' },
        { "disable", no_argument, NULL, 'd' },
        { "default", no_argument, NULL, 'D' },
        { "delete", no_argument, NULL, 'D' },
        { "unset", no_argument, NULL, 'D' },
        { "offline-mode", no_argument, NULL, TOOL_OFFLINE_OPT },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    bool offline = false;
    int mode = 0, c;
    while ((c = getopt_long(argc, argv, "ledDh", opts, NULL)) != -1) {
        switch (c) {
        case 'l': case 'e': case 'd': case 'D':
            if (mode && mode != c)
                tool_usage_error(prog, "choose one of -l, -e, -d and -D");
            mode = c;
            break;
        case TOOL_OFFLINE_OPT: offline = true; break;
        case 'h': usage(stdout); return 0;
        default: tool_usage_error(prog, "bad option");
        }
    }
    if (!mode)
        mode = 'l';
    int nargs = argc - optind;
    if (mode == 'l' && nargs != 1)
        tool_usage_error(prog, "expected a VM name");
    if (mode != 'l' && nargs != 2)
        tool_usage_error(prog, "-e, -d and -D want NAME SERVICE");
    const char *name = argv[optind], *service = mode == 'l' ? NULL : argv[optind + 1];

    struct qubes q;
    struct qerr err;
    /* A name that could not reach the guest is refused before anything is
     * opened; -D may still remove such a key of an old file. */
    if ((mode == 'e' || mode == 'd') && qservice_check_name(service, &err) < 0)
        tool_fail(prog, &err);
    if (qubes_open(&q, offline, &err) < 0)
        tool_fail(prog, &err);
    int rc;
    if (mode == 'l') {
        const struct qvm *vm = NULL;
        rc = qubes_load_for_reading(&q, &err);
        if (rc == 0 && !(vm = qubes_find_vm(&q, name, &err)))
            rc = -1;
        if (rc == 0)
            list(vm);
    } else {
        rc = qubes_load_for_writing(&q, false, &err);
        if (rc == 0)
            rc = qubes_commit(&q, change(&q, name, mode, service, &err), &err);
    }
    qubes_close(&q);
    if (rc < 0)
        tool_fail(prog, &err);
    return 0;
}
