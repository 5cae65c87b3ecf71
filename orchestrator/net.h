/* A VM's place on the network, from its record, with the original's
 * addressing: the network of NetVM (or ProxyVM) N is 10.137.N.0/24 with
 * gateway 10.137.N.1, and its DispVMs are on 10.138.N.0/24 with gateway
 * 10.138.N.1.
 *   - a VM with qid Q: 10.137.N.(Q+2), MAC from its `mac` attribute, else
 *     00:16:3e:5e:6c:QQ;
 *   - DispVM D: 10.138.N.(D%254+1), MAC 00:16:3e:7c:8b:DD.
 * On this host the gateways are addresses of a host bridge per network,
 * "qubes-netN", which the VMs' NICs join: a VM reaches the host and the
 * other VMs of its network. Routing through a NetVM guest is not built. */
#ifndef QUBES_NET_H
#define QUBES_NET_H

#include <stdbool.h>

#include "error.h"
#include "vm.h"

struct qnet {
    bool on;                    /* false: the VM has no network */
    int netid;
    int prefix;                 /* netmask bits of ip */
    char mac[18], ip[16], gateway[16];
    char bridge[16];
};

struct qvm_collection;

/* Fills `out` for `vm`; out->on is false when it has no netvm. The error
 * names a netvm that is not a NetVM/ProxyVM or has no netid. */
int qnet_of_vm(const struct qvm_collection *c, const struct qvm *vm, struct qnet *out,
               struct qerr *err);

/* The same for the DispVM `name` with `dispid` behind the netvm with qid
 * `netvm_qid` (-1: no network), before it has a record. */
int qnet_of_dispvm(const struct qvm_collection *c, const char *name, int netvm_qid, int dispid,
                   struct qnet *out, struct qerr *err);

/* The kernel command line words that configure the guest's interface at
 * boot ("qubes.ip=IP/PREFIX qubes.gw=GW"), or "" without network. */
void qnet_cmdline(const struct qnet *n, char *out, size_t len);

/* Creates the network's host bridge with both gateway addresses, and brings
 * it up, unless it is up already. Needs CAP_NET_ADMIN. */
int qnet_host_up(const struct qnet *n, struct qerr *err);

#endif
