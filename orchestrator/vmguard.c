#include "vmguard.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "collection.h"
#include "firewall.h"
#include "net.h"
#include "qubes.h"
#include "runtime.h"
#include "vmfw.h"

/* The interface of `vm` as vmfw sees it; false when it has none. */
static int describe(struct qubes *q, const struct qvm *vm, struct qnet *net,
                    struct qnet_serving *gw, struct qnet_serving *own, struct qerr *err)
{
    if (qnet_of_vm(q->coll, vm, net, err) < 0)
        return -1;
    if (!net->on)
        return 0;
    const struct qvm *nv = qvm_collection_by_qid(q->coll, vm->netvm_qid);
    if (!nv)
        return qerr_set(err, "'%s': its netvm (qid %d) does not exist", vm->name, vm->netvm_qid);
    qnet_serving_of_vm(nv, gw);
    qnet_serving_of_vm(vm, own);
    return 1;
}

int vmguard_up(struct qubes *q, const struct qvm *vm, struct qerr *err)
{
    long long next;
    return vmguard_up_next(q, vm, &next, err);
}

int vmguard_next_expire(struct qubes *q, const struct qvm *vm, long long *next_expire,
                        struct qerr *err)
{
    char path[4200];
    struct qfw fw;
    *next_expire = 0;
    if (qfw_path(q, vm, path, sizeof path, err) < 0 || qfw_load(path, &fw, err) < 0)
        return qerr_prefix(err, "the firewall of '%s'", vm->name);
    *next_expire = qfw_next_expiry(&fw, (long long)time(NULL));
    qfw_free(&fw);
    return 0;
}

int vmguard_up_next(struct qubes *q, const struct qvm *vm, long long *next_expire,
                    struct qerr *err)
{
    *next_expire = 0;
    struct qnet net;
    struct qnet_serving gw, own;
    int has = vmm_is_test_driver(&q->vmm) ? 0 : describe(q, vm, &net, &gw, &own, err);
    if (has <= 0)
        return has;
    char extra[2][24];
    const char *extras[2] = { extra[0], extra[1] };
    snprintf(extra[0], sizeof extra[0], "10.137.%d.0/24", own.netid);
    snprintf(extra[1], sizeof extra[1], "10.138.%d.0/24", own.netid);
    struct vmfw_iface ifc = {
        .ifname = net.ifname, .mac = net.mac, .ip = net.ip, .gw_mac = gw.mac,
        .gw_ip = { gw.gateway, gw.disp_gateway },
        .extra = own.on ? extras : NULL, .n_extra = own.on ? 2 : 0,
        .apply_rules = true,    /* a ProxyVM's: to its own traffic (vmfw.h) */
    };
    struct qfw fw;
    char path[4200];
    qfw_defaults(&fw);
    if (qfw_path(q, vm, path, sizeof path, err) < 0 || qfw_load(path, &fw, err) < 0)
        return qerr_prefix(err, "the firewall of '%s'", vm->name);
    char *script = NULL;
    int rc = vmfw_script(&ifc, &fw, (long long)time(NULL), &script, next_expire, err);
    qfw_free(&fw);
    if (rc == 0)
        rc = vmfw_apply(script, err);
    free(script);
    return rc < 0 ? qerr_prefix(err, "cannot guard the interface %s of '%s'", net.ifname,
                                vm->name)
                  : 0;
}

int vmguard_down(struct qubes *q, const struct qvm *vm, struct qerr *err)
{
    struct qnet net;
    if (vmm_is_test_driver(&q->vmm) || qnet_of_vm(q->coll, vm, &net, err) < 0 || !net.on)
        return 0;
    char *script = NULL;
    int rc = vmfw_remove_script(net.ifname, &script, err);
    if (rc == 0)
        rc = vmfw_apply(script, err);
    free(script);
    return rc;
}

int vmguard_reload(struct qubes *q, const struct qvm *vm, bool *applied, struct qerr *err)
{
    char sock[PATH_MAX];
    *applied = false;
    /* Running, without asking the hypervisor (the tool works offline): a
     * VM has its qrexec daemon's socket while it runs. */
    if (qrt_vm_path(&q->cfg, vm->name, QRT_QREXEC_SOCK, sock, sizeof sock, err) < 0)
        return -1;
    if (access(sock, F_OK) != 0)
        return 0;
    if (vmguard_up(q, vm, err) < 0)
        return -1;
    *applied = !vmm_is_test_driver(&q->vmm);
    return 0;
}
