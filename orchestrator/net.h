/* A VM's place on the network, from its record, with the original's
 * addressing: the network of NetVM (or ProxyVM) N is 10.137.N.0/24 with
 * gateway 10.137.N.1, and its DispVMs are on 10.138.N.0/24 with gateway
 * 10.138.N.1.
 *   - a VM with qid Q: 10.137.N.(Q+2), MAC from its `mac` attribute, else
 *     00:16:3e:5e:6c:QQ; the host side of its interface is "qvmQ";
 *   - DispVM D: 10.138.N.(D%254+1), MAC 00:16:3e:7c:8b:DD, "qdispD".
 * Each network is an isolated libvirt network "qubes-netN" (a bridge of
 * that name) on which the host has no address: the gateway addresses are
 * held by the NetVM or ProxyVM itself, a guest, on a second interface with
 * MAC 00:16:3e:5e:6d:NN (its "serving" side). Nothing on the host routes or
 * forwards between networks; a ProxyVM routes its networks to its netvm
 * without translation, and its netvm routes them back through it. */
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
    char bridge[16];            /* the network, and its bridge */
    char ifname[16];            /* the host side of the VM's interface */
};

/* The side of a NetVM or ProxyVM that serves network `netid`. */
struct qnet_serving {
    bool on;                    /* false: the VM is not a NetVM or ProxyVM */
    int netid;
    char mac[18], ifname[16], bridge[16];
    char gateway[16], disp_gateway[16];     /* 10.137.N.1, 10.138.N.1 */
};

struct qvm_collection;

/* The network of a DispVM without one, restored from a savefile made with
 * a NIC: the NIC stays (the saved device state has it), link down, alone
 * with the other such DispVMs' on a network no VM serves. */
#define QNET_NONE "qubes-nonet"

/* Fills `out` for `vm`; out->on is false when it has no netvm. The error
 * names a netvm that is not a NetVM/ProxyVM or has no netid. */
int qnet_of_vm(const struct qvm_collection *c, const struct qvm *vm, struct qnet *out,
               struct qerr *err);

/* The same for the DispVM `name` with `dispid` behind the netvm with qid
 * `netvm_qid` (-1: no network), before it has a record. */
int qnet_of_dispvm(const struct qvm_collection *c, const char *name, int netvm_qid, int dispid,
                   struct qnet *out, struct qerr *err);

/* The network `vm` serves, when it is a NetVM or ProxyVM with a netid. */
void qnet_serving_of_vm(const struct qvm *vm, struct qnet_serving *out);

/* The kernel command line words that configure the guest's interfaces at
 * boot: "qubes.ip=IP/PREFIX qubes.gw=GW" for its uplink, and for a VM that
 * serves a network "qubes.serve=MAC,GW/24,DISPGW/24" (the interface with
 * that MAC gets both gateway addresses and the VM forwards); "" for
 * neither. `serve` may be NULL. */
void qnet_cmdline(const struct qnet *n, const struct qnet_serving *serve, char *out, size_t len);

#endif
