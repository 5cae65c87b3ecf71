/* Installs (or removes) one VM interface's chains in `bridge qubes`
 * through orchestrator/vmfw.h, for tests/t/36-vmfw.t:
 *
 *   vmfw-apply [-p] [-f FIREWALL.xml] [-i] [-x PREFIX]... [-t NOW]
 *              IFNAME MAC IP GW-MAC GW-IP [GW-IP2]
 *   vmfw-apply [-p] -r IFNAME
 *
 * -f: the VM's rules, read by qfw_load (no file: the defaults); -i: a
 * ProxyVM's uplink (no rules); -x: a network the VM may also send from;
 * -t: the time rules expire against; -p: print the script, do not run
 * nft. The next expiry, when there is one, goes to standard error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../orchestrator/firewall.h"
#include "../../orchestrator/vmfw.h"

static int usage(void)
{
    fprintf(stderr, "usage: vmfw-apply [-p] [-f FIREWALL.xml] [-i] [-x PREFIX]... [-t NOW] "
                    "IFNAME MAC IP GW-MAC GW-IP [GW-IP2]\n"
                    "       vmfw-apply [-p] -r IFNAME\n");
    return 2;
}

int main(int argc, char **argv)
{
    bool print = false, remove = false, infra = false;
    const char *fw_path = NULL, *extra[16];
    size_t n_extra = 0;
    long long now = (long long)time(NULL);
    int c;
    while ((c = getopt(argc, argv, "pf:ix:rt:")) != -1) {
        switch (c) {
        case 'p': print = true; break;
        case 'f': fw_path = optarg; break;
        case 'i': infra = true; break;
        case 'r': remove = true; break;
        case 't': now = atoll(optarg); break;
        case 'x':
            if (n_extra == sizeof extra / sizeof *extra)
                return usage();
            extra[n_extra++] = optarg;
            break;
        default: return usage();
        }
    }
    int n = argc - optind;
    if (remove ? n != 1 : n != 5 && n != 6)
        return usage();
    char **a = argv + optind;
    struct qerr err = { 0 };
    char *script = NULL;
    struct qfw fw;
    qfw_defaults(&fw);
    long long next = 0;
    int rc;
    if (remove) {
        rc = vmfw_remove_script(a[0], &script, &err);
    } else {
        struct vmfw_iface ifc = {
            .ifname = a[0], .mac = a[1], .ip = a[2], .gw_mac = a[3],
            .gw_ip = { a[4], n == 6 ? a[5] : NULL },
            .extra = extra, .n_extra = n_extra, .apply_rules = !infra,
        };
        rc = fw_path && !infra ? qfw_load(fw_path, &fw, &err) : 0;
        if (rc == 0)
            rc = vmfw_script(&ifc, infra ? NULL : &fw, now, &script, &next, &err);
    }
    if (rc == 0 && print)
        fputs(script, stdout);
    else if (rc == 0)
        rc = vmfw_apply(script, &err);
    if (rc == 0 && next)
        fprintf(stderr, "next expiry: %lld\n", next);
    if (rc < 0)
        fprintf(stderr, "vmfw-apply: %s\n", err.msg);
    free(script);
    qfw_free(&fw);
    return rc < 0 ? 1 : 0;
}
