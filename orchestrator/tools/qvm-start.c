/* qvm-start: start a VM and wait until its agent answers. */
#include <string.h>

#include "../../dispvm/dispvm.h"
#include "../lifecycle.h"
#include "tool.h"

static const char *prog = "qvm-start";

static void usage(FILE *f)
{
    fprintf(f,
"Usage: %s [options] NAME\n"
"  or:  %s [options] --dvm TEMPLATE-dvm\n"
"  or:  %s [options] --autostart\n"
"Start a VM: its domain on libvirt, then wait until the agent inside answers\n"
"(at most the VM's qrexec_timeout seconds). A template never starts while a\n"
"VM based on it runs, nor such a VM while its template runs. A VM that\n"
"runs without its qrexec daemon (it died) is served again: a new daemon\n"
"(and relay, for a VM on another host) for the same domain.\n"
"\n"
"Options:\n"
"      --no-wait       return once the domain exists (the VM is Transient)\n"
"      --no-guid       do not start the VM's GUI: no monitor layout is sent\n"
"                      (else the host's, from xrandr -q, $QUBES_MONITOR_LAYOUT\n"
"                      or $QUBES_BASE_DIR/monitor-layout, W H X Y per line)\n"
"      --debug         this start in the VM's debug mode, whatever its debug\n"
"                      property says: a VM based on a template keeps its root\n"
"                      layer (volatile.img) of the last run, unless the\n"
"                      template's root is newer; qubes.xml is not changed.\n"
"                      Names the VM's logs\n"
"      --dvm           prepare the DispVM savefile of TEMPLATE: boot\n"
"                      TEMPLATE-dvm (created when missing), save it, and put\n"
"                      the savefile in $QUBES_BASE_DIR/dvmdata, as\n"
"                      qvm-create-default-dvm TEMPLATE does (the original's\n"
"                      qvm-start --dvm was that preparation's start)\n"
"      --offline-mode  refused: starting needs the hypervisor\n"
"      --autostart     start every halted VM whose autostart property is True\n"
"                      (not DispVMs), netvms before the VMs behind them, as\n"
"                      the host's boot does (qubes-vm-autostart.service); one\n"
"                      that fails does not keep the others back; exit status\n"
"                      1 when any failed\n"
"  -q, --quiet         say nothing on success\n"
"      --version       show the version and the hypervisor backends\n"
"  -h, --help          show this help\n", prog, prog, prog);
}

/* The template whose DispVM template `name` is (TEMPLATE-dvm). */
static void dvm_template(const char *name, char *out, size_t len)
{
    size_t n = strlen(name);
    if (n <= 4 || strcmp(name + n - 4, "-dvm") != 0 || n - 4 >= len)
        tool_usage_error(prog, "--dvm takes the name of a DispVM template: TEMPLATE-dvm");
    memcpy(out, name, n - 4);
    out[n - 4] = '\0';
}

int main(int argc, char **argv)
{
    tool_check_version(argc, argv);
    static const struct option opts[] = {
        { "no-wait", no_argument, NULL, 'w' },
        { "no-guid", no_argument, NULL, 'g' },
        { "debug", no_argument, NULL, 'd' },
        { "dvm", no_argument, NULL, 'D' },
        { "autostart", no_argument, NULL, 'A' },
        { "offline-mode", no_argument, NULL, TOOL_OFFLINE_OPT },
        { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    bool offline = false, quiet = false, debug = false, dvm = false, autostart = false;
    struct qvm_start_opts o = { .wait = true, .gui = true };
    int c;
    while ((c = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
        switch (c) {
        case 'w': o.wait = false; break;
        case 'g': o.gui = false; break;
        case 'd': debug = true; break;
        case 'D': dvm = true; break;
        case 'A': autostart = true; break;
        case TOOL_OFFLINE_OPT: offline = true; break;
        case 'q': quiet = true; break;
        case 'h': usage(stdout); return 0;
        default: tool_usage_error(prog, "bad option");
        }
    }
    if (autostart && (dvm || debug))
        tool_usage_error(prog, "--autostart starts VMs as they are: not with --dvm or --debug");
    if (autostart ? optind != argc : optind != argc - 1)
        tool_usage_error(prog, autostart ? "--autostart takes no VM name" : "expected exactly one VM name");
    if (dvm && (debug || !o.wait))
        tool_usage_error(prog, "--dvm prepares a savefile: not with --debug or --no-wait");
    char tpl[256];
    if (dvm)
        dvm_template(argv[optind], tpl, sizeof tpl);
    o.progress = quiet ? NULL : stderr;
    struct qubes q;
    struct qerr err;
    int rc = qubes_open(&q, offline, &err);
    if (rc == 0 && autostart) {
        int started = 0;
        if (q.vmm.offline && vmm_require(&q.vmm, &err) < 0)
            rc = -1;
        else
            rc = qubes_vm_start_autostart(&q, &o, &started, &err);
        if (!quiet)
            fprintf(stderr, "--> %d VM%s started\n", started, started == 1 ? "" : "s");
    } else if (rc == 0 && dvm) {
        /* Before T-dvm is created: offline, nothing of it would boot. */
        if (q.vmm.offline && vmm_require(&q.vmm, &err) < 0)
            rc = qerr_prefix(&err, "cannot prepare the savefile of '%s'", tpl);
        else
            rc = dispvm_prepare(&q, tpl, o.progress, &err);
    } else if (rc == 0) {
        o.debug = debug;
        rc = qubes_vm_start(&q, argv[optind], &o, &err);
    }
    qubes_close(&q);
    if (rc < 0)
        tool_fail(prog, &err);
    return 0;
}
