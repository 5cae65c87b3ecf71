/* qrexec-daemon: the one holder of a VM's agent channel (qrexec/daemon.h). */
#include <unistd.h>

#include "../../qrexec/daemon.h"
#include "../../qrexec/policy.h"
#include "../runtime.h"
#include "tool.h"

static const char *prog = "qrexec-daemon";

static void usage(FILE *f)
{
    fprintf(f,
"Usage: %s [--foreground] NAME\n"
"Hold the agent channel of the running VM NAME ($QUBES_RUN_DIR/vms/NAME/%s)\n"
"and serve it until the VM ends: requests from dom0 arrive on\n"
"$QUBES_RUN_DIR/vms/NAME/%s (root only), any number at once; calls the\n"
"VM makes (qrexec-client-vm) are decided by the policy in\n"
"$QUBES_RPC_POLICY_DIR (default %s) and logged to\n"
"$QUBES_RUN_DIR/%s. Started by qvm-start and a DispVM's restore; its\n"
"messages go to $QUBES_RUN_DIR/vms/NAME/%s; while it runs it holds\n"
"$QUBES_RUN_DIR/vms/NAME/%s (flock), which holds its pid.\n"
"\n"
"Environment: QUBES_RPC_POLICY_DIR; QUBES_RPC_ASSUME_YES=1 turns `ask` into\n"
"allow (there is no dialog); QUBES_RPC_DIR, dom0's services (default\n"
"/etc/qubes-rpc).\n"
"\n"
"Options:\n"
"      --foreground  stay attached, messages on standard error\n"
"      --version     show the version and the hypervisor backends\n"
"  -h, --help        show this help\n", prog, QRT_AGENT_SOCK, QRT_QREXEC_SOCK, QPOL_DEFAULT_DIR, QRT_POLICY_LOG,
            QRT_QREXEC_LOG, QRT_QREXEC_LOCK);
}

int main(int argc, char **argv)
{
    /* A daemon keeps nothing of its starter's: an inherited pipe would
     * never see its end while the VM runs. */
    close_range(3, ~0U, 0);
    tool_check_version(argc, argv);
    bool foreground = tool_vm_daemon_options(argc, argv, prog, usage);
    struct qerr err;
    int rc = qrexecd_run(argv[optind], foreground, &err);
    if (rc < 0)
        tool_fail(prog, &err);
    return rc;
}
