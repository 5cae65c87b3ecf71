#include "net.h"

#include "collection.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* The network behind the netvm `netvm_qid` of the VM `name`: 0 with
 * out->on false when there is none. */
static int network(const struct qvm_collection *c, const char *name, int netvm_qid,
                   struct qnet *out, struct qerr *err)
{
    memset(out, 0, sizeof *out);
    out->netid = -1;
    if (netvm_qid < 0)
        return 0;
    const struct qvm *nv = qvm_collection_by_qid(c, netvm_qid);
    if (!nv || !qvm_class_is_netvm(nv->cls) || nv->netid < 0)
        return qerr_set(err, "'%s': its netvm (qid %d) is not a NetVM or ProxyVM with a netid",
                        name, netvm_qid);
    out->on = true;
    out->netid = nv->netid;
    out->prefix = 24;
    snprintf(out->bridge, sizeof out->bridge, "qubes-net%d", nv->netid);
    return 0;
}

int qnet_of_dispvm(const struct qvm_collection *c, const char *name, int netvm_qid, int dispid,
                   struct qnet *out, struct qerr *err)
{
    if (network(c, name, netvm_qid, out, err) < 0)
        return -1;
    if (!out->on)
        return 0;
    int d = dispid < 0 ? 0 : dispid;
    snprintf(out->ip, sizeof out->ip, "10.138.%d.%d", out->netid, d % 254 + 1);
    snprintf(out->gateway, sizeof out->gateway, "10.138.%d.1", out->netid);
    snprintf(out->mac, sizeof out->mac, "00:16:3e:7c:8b:%02x", d & 0xff);
    snprintf(out->ifname, sizeof out->ifname, "qdisp%d", d);
    return 0;
}

int qnet_of_vm(const struct qvm_collection *c, const struct qvm *vm, struct qnet *out,
               struct qerr *err)
{
    if (vm->cls == QVM_DISP)
        return qnet_of_dispvm(c, vm->name, vm->netvm_qid, vm->dispid, out, err);
    if (network(c, vm->name, vm->netvm_qid, out, err) < 0)
        return -1;
    if (!out->on)
        return 0;
    snprintf(out->ip, sizeof out->ip, "10.137.%d.%d", out->netid, vm->qid + 2);
    snprintf(out->gateway, sizeof out->gateway, "10.137.%d.1", out->netid);
    const char *mac = qvm_get_attr(vm, "mac");
    if (mac && strcmp(mac, "None") != 0)
        snprintf(out->mac, sizeof out->mac, "%s", mac);
    else
        snprintf(out->mac, sizeof out->mac, "00:16:3e:5e:6c:%02x", vm->qid & 0xff);
    snprintf(out->ifname, sizeof out->ifname, "qvm%d", vm->qid);
    return 0;
}

void qnet_serving_of_vm(const struct qvm *vm, struct qnet_serving *out)
{
    memset(out, 0, sizeof *out);
    out->netid = -1;
    if (!qvm_class_is_netvm(vm->cls) || vm->netid < 0)
        return;
    out->on = true;
    out->netid = vm->netid;
    snprintf(out->mac, sizeof out->mac, "00:16:3e:5e:6d:%02x", vm->netid & 0xff);
    snprintf(out->ifname, sizeof out->ifname, "qnet%d", vm->netid);
    snprintf(out->bridge, sizeof out->bridge, "qubes-net%d", vm->netid);
    snprintf(out->gateway, sizeof out->gateway, "10.137.%d.1", vm->netid);
    snprintf(out->disp_gateway, sizeof out->disp_gateway, "10.138.%d.1", vm->netid);
}

void qnet_cmdline(const struct qnet *n, const struct qnet_serving *serve, char *out, size_t len)
{
    if (!len)
        return;
    out[0] = '\0';
    if (n->on)
        snprintf(out, len, "qubes.ip=%s/%d qubes.gw=%s", n->ip, n->prefix, n->gateway);
    if (serve && serve->on) {
        size_t used = strlen(out);
        snprintf(out + used, len - used, "%squbes.serve=%s,%s/24,%s/24", used ? " " : "",
                 serve->mac, serve->gateway, serve->disp_gateway);
    }
}
