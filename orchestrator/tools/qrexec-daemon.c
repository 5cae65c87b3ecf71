/* qrexec-daemon: the one holder of a VM's agent channel (qrexec/daemon.h). */
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include "../../qrexec/daemon.h"
#include "../../qrexec/policy.h"
#include "../runtime.h"
#include "../vm.h"
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
"/etc/qubes-rpc); QUBES_VMM_PLUGIN_DIR, where %s is, which reads\n"
"the database for it (default: ../lib/qubes-orchestrator beside it).\n"
"\n"
"Options:\n"
"      --foreground  stay attached, messages on standard error\n"
"      --ready-fd N  for a starter that goes on (the DispVM service): write\n"
"                    one byte to descriptor N once the lock is held, detach\n"
"                    without forking, and write another once the agent\n"
"                    answered (the socket takes callers)\n"
"      --firewall FILE  the VM's firewall file (its starter knows it; without\n"
"                    it the database names it)\n"
"      --firewall-expiry T  the earliest expiry time of the rules in FILE,\n"
"                    seconds since the epoch, 0 for none (its starter wrote\n"
"                    them); without it they are read\n"
"      --version     show the version and the hypervisor backends\n"
"  -h, --help        show this help\n", prog, QRT_AGENT_SOCK, QRT_QREXEC_SOCK, QPOL_DEFAULT_DIR, QRT_POLICY_LOG,
            QRT_QREXEC_LOG, QRT_QREXEC_LOCK, QREXECD_DB);
}

int main(int argc, char **argv)
{
    tool_check_version(argc, argv);
    static const struct option opts[] = {
        { "foreground", no_argument, NULL, 'f' },
        { "ready-fd", required_argument, NULL, 'r' },
        { "firewall", required_argument, NULL, 'w' },
        { "firewall-expiry", required_argument, NULL, 'e' },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    bool foreground = false;
    int ready = -1;
    const char *firewall = NULL;
    long long fw_next = -1;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'f': foreground = true; break;
        case 'r': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end || v < 3 || v > 1023)
                tool_usage_error(prog, "--ready-fd: a descriptor from 3 to 1023");
            ready = (int)v;
            break;
        }
        case 'w': firewall = optarg; break;
        case 'e': {
            long v;
            if (qparse_int(optarg, 0, LONG_MAX, &v) < 0)
                tool_usage_error(prog, "--firewall-expiry: seconds since the epoch, or 0");
            fw_next = v;
            break;
        }
        case 'h': usage(stdout); return 0;
        default: tool_usage_error(prog, "bad option");
        }
    }
    if (argc - optind != 1)
        tool_usage_error(prog, "expected the VM's name");
    if (fw_next >= 0 && !firewall)
        tool_usage_error(prog, "--firewall-expiry: the expiry of the rules in --firewall FILE");
    if (ready >= 0 && (foreground || fcntl(ready, F_GETFD) < 0))
        tool_usage_error(prog, foreground ? "--ready-fd detaches: not with --foreground"
                                          : "--ready-fd: not an open descriptor");
    /* A daemon keeps nothing of its starter's but that line back: an
     * inherited pipe would never see its end while the VM runs. */
    if (ready >= 0) {
        if (ready > 3)
            close_range(3, (unsigned)ready - 1, 0);
        close_range((unsigned)ready + 1, ~0U, 0);
    } else {
        close_range(3, ~0U, 0);
    }
    struct qerr err;
    int rc = qrexecd_run(argv[optind], foreground, ready, firewall, fw_next, &err);
    if (rc < 0)
        tool_fail(prog, &err);
    return rc;
}
