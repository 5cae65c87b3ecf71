/* What dispvm/ computes once per request and per DispVM (dispvm/state.h)
 * from a database: the template and its dvm VM, who asks and with which
 * label, a DispVM's run directory and paths, its network on the one the dvm
 * VM was saved on; the savefile set's paths (dispvm/dvmdata.h). No
 * hypervisor: offline, from an in-memory collection. */
#include "../../dispvm/state.h"
#include "../tap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char db[] =
    "<QubesVmCollection default_template=\"1\" default_netvm=\"2\" default_fw_netvm=\"2\" "
    "updatevm=\"2\" clockvm=\"2\" default_kernel=\"None\">\n"
    "<QubesTemplateHVm qid=\"1\" name=\"fedora\" label=\"black\" memory=\"640\" netvm_qid=\"none\" "
    "template_qid=\"none\"/>\n"
    "<QubesNetVm qid=\"2\" name=\"sys-net\" netid=\"3\" label=\"red\" netvm_qid=\"none\" "
    "template_qid=\"none\"/>\n"
    "<QubesHVm qid=\"3\" name=\"fedora-dvm\" label=\"gray\" template_qid=\"1\" netvm_qid=\"2\" "
    "internal=\"True\"/>\n"
    "<QubesHVm qid=\"4\" name=\"work\" label=\"blue\" template_qid=\"1\" netvm_qid=\"2\"/>\n"
    "<QubesTemplateHVm qid=\"5\" name=\"offline\" label=\"black\" netvm_qid=\"none\" "
    "template_qid=\"none\"/>\n"
    "<QubesHVm qid=\"6\" name=\"offline-dvm\" label=\"gray\" template_qid=\"5\" netvm_qid=\"none\"/>\n"
    "<QubesTemplateHVm qid=\"7\" name=\"a-template-name-of-29-chars-x\" label=\"black\" "
    "netvm_qid=\"none\" template_qid=\"none\"/>\n"
    "<QubesDisposableVm qid=\"8\" name=\"disp42\" dispid=\"42\" template_qid=\"1\" label=\"green\" "
    "netvm_qid=\"2\" firewall_conf=\"firewall.xml\"/>\n"
    "</QubesVmCollection>\n";

int main(void)
{
    struct qubes q;
    struct qerr err = { 0 };
    setenv("QUBES_BASE_DIR", "/var/lib/qubes", 1);
    setenv("QUBES_RUN_DIR", "/var/run/qubes", 1);
    setenv("QUBES_OFFLINE", "1", 1);
    if (qubes_open(&q, true, &err) < 0 ||
        qvm_collection_parse(db, sizeof db - 1, "test", &q.coll, &err) < 0) {
        fprintf(stderr, "test_dispvm_state: %s\n", err.msg);
        return 99;
    }

    /* The template, by name and by default. */
    struct dispvm_template t;
    ok(dispvm_template_find(&q, "fedora", &t, &err) == 0, "the template is found by name");
    ok(t.qid == 1 && strcmp(t.name, "fedora") == 0 && strcmp(t.dvm, "fedora-dvm") == 0 && t.hvm,
       "its qid, name, dvm VM (%s) and class", t.dvm);
    ok(t.memory_mib == 640, "a DispVM gets the template's memory back (%ld MiB)", t.memory_mib);
    ok(t.dvm_qid == 3 && t.dvm_netvm_qid == 2, "its dvm VM's qid and network (netvm qid %d)",
       t.dvm_netvm_qid);
    ok(strcmp(t.set.savefile, "/var/lib/qubes/dvmdata/fedora-dvm.savefile") == 0 &&
       strcmp(t.set.root, "/var/lib/qubes/dvmdata/fedora-dvm.root.qcow2") == 0 &&
       strcmp(t.set.priv, "/var/lib/qubes/dvmdata/fedora-dvm.private.img") == 0 &&
       strcmp(t.set.meta, "/var/lib/qubes/dvmdata/fedora-dvm.meta") == 0 &&
       strcmp(t.set.dir, "/var/lib/qubes/dvmdata") == 0,
       "the savefile set is in $BASE/dvmdata");
    ok(strcmp(t.set.shm_copy, "/dev/shm/qubes/fedora-dvm.savefile") == 0,
       "its copy in shared memory: %s", t.set.shm_copy);
    struct dispvm_template dflt;
    ok(dispvm_template_find(&q, NULL, &dflt, &err) == 0 && dflt.qid == 1,
       "no name: the default template");
    ok(dispvm_template_vm(q.coll, &t) == qvm_collection_by_qid(q.coll, 1) &&
       dispvm_dvm_vm(q.coll, &t) == qvm_collection_by_qid(q.coll, 3),
       "the records are found again by qid");
    struct dispvm_template stale = t;
    stale.dvm_qid = 4;
    ok(dispvm_dvm_vm(q.coll, &stale) == NULL, "a qid that now names another VM finds nothing");

    ok(dispvm_template_find(&q, "work", &stale, &err) < 0 &&
       strcmp(err.msg, "'work' is a HVM, not a template") == 0, "an HVM is refused: %s", err.msg);
    ok(dispvm_template_find(&q, "nosuch", &stale, &err) < 0 && strstr(err.msg, "'nosuch'") &&
       strstr(err.msg, "does not exist"), "an unknown template: %s", err.msg);
    ok(dispvm_template_find(&q, "a-template-name-of-29-chars-x", &stale, &err) < 0 &&
       strstr(err.msg, "too long for its '-dvm' VM"), "a name too long for -dvm: %s", err.msg);
    q.coll->globals[QG_DEFAULT_TEMPLATE] = -1;
    ok(dispvm_template_find(&q, NULL, &stale, &err) < 0 && strstr(err.msg, "no default template"),
       "no default template: %s", err.msg);
    q.coll->globals[QG_DEFAULT_TEMPLATE] = 1;

    /* Who asks, and the label. */
    struct dispvm_state d;
    dispvm_state_init(&d, &t, q.coll, "work", NULL, false, NULL);
    ok(d.source_qid == 4 && strcmp(d.label, "blue") == 0 && !d.preload,
       "the source VM's label (%s) when none is given", d.label);
    dispvm_state_init(&d, &t, q.coll, "work", "orange", false, NULL);
    ok(strcmp(d.label, "orange") == 0, "a label given wins");
    dispvm_state_init(&d, &t, q.coll, "gone", NULL, false, NULL);
    ok(d.source_qid == -1 && strcmp(d.label, "red") == 0, "an unknown source: red");
    dispvm_state_init(&d, &t, q.coll, "dom0", "gray", true, NULL);
    ok(d.source_qid == 0 && d.preload && d.dispid == -1 && !d.name[0],
       "a preload: asked by dom0, no name yet");
    ok(dispvm_source_vm(q.coll, &d) == qvm_collection_by_qid(q.coll, 0), "dom0's record");

    /* Its name: paths and network, on the dvm VM's network. */
    ok(dispvm_state_name(&d, &q.cfg, q.coll, "disp7", 7, &err) == 0, "a name is given");
    ok(strcmp(d.rundir, "/var/run/qubes/vms/disp7") == 0 &&
       strcmp(d.agent_sock, "/var/run/qubes/vms/disp7/agent.sock") == 0 &&
       strcmp(d.owner, "/var/run/qubes/vms/disp7/owner") == 0 &&
       strcmp(d.ram, "/var/run/qubes/vms/disp7/ram") == 0 &&
       strcmp(d.console, "/var/run/qubes/vms/disp7/console.log") == 0 &&
       strcmp(d.root_layer, "/var/run/qubes/vms/disp7/root.qcow2") == 0 &&
       strcmp(d.private_layer, "/var/run/qubes/vms/disp7/private.qcow2") == 0 &&
       strcmp(d.clone, "/var/run/qubes/vms/disp7/savefile") == 0,
       "its files are in its run directory");
    ok(d.net.on && d.net.netid == 3 && strcmp(d.net.ip, "10.138.3.8") == 0 &&
       strcmp(d.net.gateway, "10.138.3.1") == 0 && strcmp(d.net.mac, "00:16:3e:7c:8b:07") == 0 &&
       strcmp(d.net.bridge, "qubes-net3") == 0 && d.net.prefix == 24,
       "disp7 on netid 3: %s/%d via %s, %s", d.net.ip, d.net.prefix, d.net.gateway, d.net.mac);
    ok(dispvm_state_name(&d, &q.cfg, q.coll, "disp253", 253, &err) == 0 &&
       strcmp(d.net.ip, "10.138.3.254") == 0 && strcmp(d.net.mac, "00:16:3e:7c:8b:fd") == 0,
       "disp253: %s, %s (no gateway's .1)", d.net.ip, d.net.mac);
    ok(d.source_qid == 0 && d.preload && strcmp(d.label, "gray") == 0,
       "naming keeps the caller's part");
    d.has_domain = d.has_record = true;
    dispvm_state_unname(&d);
    ok(!d.name[0] && !d.rundir[0] && !d.net.on && !d.has_domain && !d.has_record &&
       d.dispid == -1 && d.tpl == &t && strcmp(d.source, "dom0") == 0 && d.preload,
       "unnamed again: the caller's part stays, the rest goes");

    struct dispvm_template off;
    ok(dispvm_template_find(&q, "offline", &off, &err) == 0 && off.dvm_netvm_qid == -1,
       "a dvm VM without a netvm");
    dispvm_state_init(&d, &off, q.coll, "dom0", NULL, false, NULL);
    ok(dispvm_state_name(&d, &q.cfg, q.coll, "disp9", 9, &err) == 0 && !d.net.on,
       "gives DispVMs without a network");

    /* An existing DispVM, for a claim or a teardown: from its record. */
    ok(dispvm_state_existing(&d, &q.cfg, q.coll, "disp42", &err) == 0 && d.dispid == 42 &&
       d.has_domain && d.has_record && strcmp(d.net.ip, "10.138.3.43") == 0 &&
       strcmp(d.rundir, "/var/run/qubes/vms/disp42") == 0,
       "an existing DispVM: dispid, network and files from its record (%s)", d.net.ip);
    dispvm_state_init(&d, &t, q.coll, "dom0", NULL, false, NULL);
    ok(dispvm_state_name(&d, &q.cfg, q.coll, "work", -1, &err) < 0 &&
       strcmp(err.msg, "'work' is not a DispVM") == 0, "a VM that is no DispVM: %s", err.msg);
    ok(dispvm_state_name(&d, &q.cfg, q.coll, "disp-a-name-longer-than-31-chars", 1, &err) < 0,
       "a name too long is refused: %s", err.msg);

    ok(qvm_is_dispvm_name("disp1") && qvm_is_dispvm_name("disp253") && !qvm_is_dispvm_name("disp") &&
       !qvm_is_dispvm_name("disp1a") && !qvm_is_dispvm_name("work") && !qvm_is_dispvm_name("xdisp1"),
       "DispVM names: disp and digits");

    /* dispvm-preload, as the database holds it. */
    ok(dispvm_preload_target(q.coll) == 0, "no dispvm_preload: no pool");
    qattrs_set(&q.coll->root_attrs, "dispvm_preload", "3");
    ok(dispvm_preload_target(q.coll) == 3, "dispvm_preload=3: three");
    qattrs_set(&q.coll->root_attrs, "dispvm_preload", "17");
    ok(dispvm_preload_target(q.coll) == 0, "more than %d (a hostile file): none",
       QUBES_DISPVM_PRELOAD_MAX);

    struct dvmdata set;
    ok(dvmdata_of(&q.cfg, "a-name-longer-than-thirty-one-ch", &set, &err) < 0,
       "a set for a name longer than a VM's is refused: %s", err.msg);
    qubes_close(&q);
    return done_testing();
}
