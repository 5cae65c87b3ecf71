/* Network identities from VM records (orchestrator/net.c), on the original's
 * qubes.xml: the addressing scheme of net.h applied to VMs whose qids,
 * netvms and netids the fixture fixes, a MAC given by the record, DispVMs,
 * VMs without a network, and a netvm that is not one. */
#include <stdlib.h>
#include <string.h>

#include "../../orchestrator/collection.h"
#include "../../orchestrator/net.h"
#include "../testutil.h"

static struct qvm_collection *load_fixture(void)
{
    size_t len;
    char *text = slurp(fixture_path(), &len);
    struct qvm_collection *c = NULL;
    struct qerr err;
    if (!text || qvm_collection_parse(text, len, fixture_path(), &c, &err) < 0) {
        fprintf(stderr, "cannot load the fixture: %s\n", text ? err.msg : fixture_path());
        exit(99);
    }
    free(text);
    return c;
}

static void expect(struct qvm_collection *c, const char *name, const char *ip, const char *gw,
                   const char *mac, const char *bridge)
{
    struct qnet n;
    struct qerr err;
    struct qvm *vm = qvm_collection_by_name(c, name);
    int rc = vm ? qnet_of_vm(c, vm, &n, &err) : -1;
    ok(rc == 0 && n.on && strcmp(n.ip, ip) == 0 && strcmp(n.gateway, gw) == 0 &&
           strcmp(n.mac, mac) == 0 && strcmp(n.bridge, bridge) == 0 && n.prefix == 24,
       "%s: %s via %s, %s on %s (got %s via %s, %s on %s)", name, ip, gw, mac, bridge,
       rc == 0 ? n.ip : "-", rc == 0 ? n.gateway : "-", rc == 0 ? n.mac : "-",
       rc == 0 ? n.bridge : "-");
}

int main(void)
{
    struct qvm_collection *c = load_fixture();
    struct qerr err;
    struct qnet n;

    /* qid 6 behind firewallvm (qid 3, netid 2); qid 8 behind test-testproxy
     * (netid 3); the ProxyVM firewallvm itself behind netvm (netid 1). */
    expect(c, "banking", "10.137.2.8", "10.137.2.1", "00:16:3e:5e:6c:06", "qubes-net2");
    expect(c, "untrusted", "10.137.3.10", "10.137.3.1", "00:16:3e:5e:6c:08", "qubes-net3");
    expect(c, "firewallvm", "10.137.1.5", "10.137.1.1", "00:16:3e:5e:6c:03", "qubes-net1");
    /* disp50 (dispid 50) behind netvm (qid 2, netid 1). */
    expect(c, "disp50", "10.138.1.51", "10.138.1.1", "00:16:3e:7c:8b:32", "qubes-net1");

    struct qvm *hvm = qvm_collection_by_name(c, "test-testhvm");
    ok(hvm && qnet_of_vm(c, hvm, &n, &err) == 0 && !n.on, "a VM without a netvm has no network");
    char words[128] = "x";
    qnet_cmdline(&n, NULL, words, sizeof words);
    ok(words[0] == '\0', "and no network words on its kernel command line");

    struct qvm *vm = qvm_collection_by_name(c, "personal");
    ok(vm && qvm_set_attr(vm, "mac", "02:11:22:33:44:55", &err) == 0, "a record may give its MAC");
    expect(c, "personal", "10.137.2.9", "10.137.2.1", "02:11:22:33:44:55", "qubes-net2");
    qnet_of_vm(c, vm, &n, &err);
    qnet_cmdline(&n, NULL, words, sizeof words);
    ok(strcmp(words, "qubes.ip=10.137.2.9/24 qubes.gw=10.137.2.1") == 0,
       "the kernel command line carries its address and gateway (%s)", words);

    /* A DispVM's address skips .1 for every dispid the counter hands out. */
    struct qvm *d = qvm_collection_by_name(c, "disp50");
    int gw_taken = 0;
    char id[8];
    for (int i = 1; i <= 253; i++) {
        snprintf(id, sizeof id, "%d", i);
        if (qvm_set_attr(d, "dispid", id, &err) < 0 || qnet_of_vm(c, d, &n, &err) < 0 ||
            strcmp(n.ip, n.gateway) == 0)
            gw_taken++;
    }
    ok(gw_taken == 0, "no dispid in 1..253 takes its gateway's address");

    /* The host side of each interface is named after the VM's qid or dispid. */
    struct qvm *b = qvm_collection_by_name(c, "banking");
    ok(b && qnet_of_vm(c, b, &n, &err) == 0 && strcmp(n.ifname, "qvm6") == 0,
       "the host side of qid 6's interface is qvm6 (%s)", n.ifname);
    ok(qnet_of_vm(c, d, &n, &err) == 0 && strcmp(n.ifname, "qdisp253") == 0,
       "a DispVM's is qdisp<dispid> (%s)", n.ifname);

    /* The serving side of a NetVM and a ProxyVM; none for an AppVM. */
    struct qnet_serving sv;
    qnet_serving_of_vm(qvm_collection_by_name(c, "firewallvm"), &sv);
    ok(sv.on && sv.netid == 2 && strcmp(sv.mac, "00:16:3e:5e:6d:02") == 0 &&
           strcmp(sv.bridge, "qubes-net2") == 0 && strcmp(sv.gateway, "10.137.2.1") == 0 &&
           strcmp(sv.disp_gateway, "10.138.2.1") == 0 && strcmp(sv.ifname, "qnet2") == 0,
       "the ProxyVM firewallvm serves network 2 (%s %s %s %s %s)", sv.mac, sv.bridge, sv.gateway,
       sv.disp_gateway, sv.ifname);
    struct qvm *fw = qvm_collection_by_name(c, "firewallvm");
    qnet_of_vm(c, fw, &n, &err);
    qnet_cmdline(&n, &sv, words, sizeof words);
    ok(strcmp(words, "qubes.ip=10.137.1.5/24 qubes.gw=10.137.1.1 "
                     "qubes.serve=00:16:3e:5e:6d:02,10.137.2.1/24,10.138.2.1/24") == 0,
       "its kernel command line has its uplink and the network it serves (%s)", words);
    struct qnet none = { .on = false };
    qnet_serving_of_vm(qvm_collection_by_name(c, "netvm"), &sv);
    qnet_cmdline(&none, &sv, words, sizeof words);
    ok(strcmp(words, "qubes.serve=00:16:3e:5e:6d:01,10.137.1.1/24,10.138.1.1/24") == 0,
       "a NetVM has no uplink, only what it serves (%s)", words);
    qnet_serving_of_vm(b, &sv);
    ok(!sv.on, "an AppVM serves no network");

    ok(qvm_set_attr(vm, "netvm_qid", "5", &err) == 0, "netvm_qid may name any qid in a record");
    ok(qnet_of_vm(c, vm, &n, &err) < 0 && strstr(err.msg, "'personal'") &&
           strstr(err.msg, "not a NetVM or ProxyVM"),
       "but a netvm that is no NetVM is refused, naming the VM (%s)", err.msg);
    qvm_collection_free(c);
    return done_testing();
}
