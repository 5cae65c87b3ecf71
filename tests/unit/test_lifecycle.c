/* The power-state table and the template exclusion, on libvirt's in-process
 * test driver (fast; the real thing is tests/t/50-lifecycle.t). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../orchestrator/lifecycle.h"
#include "../../orchestrator/runtime.h"
#include "../../templates/templates.h"
#include "../tap.h"

static struct qvm *add(struct qvm_collection *c, enum qvm_class cls, int qid, const char *name,
                       const char *tpl)
{
    struct qvm *vm = qvm_new(cls);
    struct qerr err;
    char num[16];
    snprintf(num, sizeof num, "%d", qid);
    qvm_set_attr(vm, "qid", num, &err);
    qvm_set_attr(vm, "name", name, &err);
    qvm_set_attr(vm, "template_qid", tpl ? tpl : "none", &err);
    qvm_collection_add(c, vm, &err);
    return vm;
}

static int test_domain(struct qubes *q, const char *name, struct qerr *err)
{
    char xml[512];
    snprintf(xml, sizeof xml, "<domain type='test'><name>%s</name><memory>65536</memory>"
             "<os><type>hvm</type></os></domain>", name);
    return vmm_create(&q->vmm, xml, err);
}

int main(void)
{
    struct qerr err;

    /* The table, with the original's messages. */
    ok(qvm_op_allowed(QOP_START, QVM_POWER_HALTED, &err) == 0, "start: Halted -> allowed");
    ok(qvm_op_allowed(QOP_START, QVM_POWER_RUNNING, &err) < 0 &&
       strcmp(err.msg, "VM is already running!") == 0, "start: Running -> 'VM is already running!'");
    ok(qvm_op_allowed(QOP_START, QVM_POWER_TRANSIENT, &err) < 0, "start: Transient -> refused");
    ok(qvm_op_allowed(QOP_START, QVM_POWER_CRASHED, &err) == 0, "start: Crashed -> allowed");
    ok(qvm_op_allowed(QOP_SHUTDOWN, QVM_POWER_HALTED, &err) < 0 &&
       strcmp(err.msg, "VM already stopped!") == 0, "shutdown: Halted -> 'VM already stopped!'");
    ok(qvm_op_allowed(QOP_KILL, QVM_POWER_HALTED, &err) < 0 &&
       strcmp(err.msg, "VM already stopped!") == 0, "kill: Halted -> 'VM already stopped!'");
    ok(qvm_op_allowed(QOP_KILL, QVM_POWER_PAUSED, &err) == 0, "kill: Paused -> allowed");
    ok(qvm_op_allowed(QOP_PAUSE, QVM_POWER_RUNNING, &err) == 0, "pause: Running -> allowed");
    ok(qvm_op_allowed(QOP_PAUSE, QVM_POWER_PAUSED, &err) < 0, "pause: Paused -> refused");
    ok(qvm_op_allowed(QOP_UNPAUSE, QVM_POWER_PAUSED, &err) == 0, "unpause: Paused -> allowed");
    ok(qvm_op_allowed(QOP_UNPAUSE, QVM_POWER_RUNNING, &err) < 0, "unpause: Running -> refused");
    ok(qvm_op_allowed(QOP_RUN, QVM_POWER_HALTED, &err) == 0, "run: Halted -> allowed (starts it)");
    ok(qvm_op_allowed(QOP_RUN, QVM_POWER_PAUSED, &err) < 0, "run: Paused -> refused");
    int holes = 0;
    for (int op = 0; op < QOP_COUNT; op++)
        for (int st = 0; st <= QVM_POWER_NA; st++)
            if (qvm_op_allowed(op, st, &err) < 0 && !err.msg[0])
                holes++;
    ok(holes == 0, "every refusal in the table has a message");

    /* The exclusion as a rule over power states given as data. */
    struct qvm_collection *c = qvm_collection_new();
    struct qvm *t = add(c, QVM_TEMPLATE_HVM, 1, "t", NULL), *k1 = add(c, QVM_HVM, 2, "k1", "1");
    struct qvm *k2 = add(c, QVM_HVM, 3, "k2", "1");
    struct qvm *kids[] = { k1, k2 };
    bool none[2] = { false, false }, second[2] = { false, true }, on = true;
    ok(template_check_start(t, kids, none, 2, &err) == 0, "no child runs: the template starts");
    ok(template_check_start(t, kids, second, 2, &err) < 0 &&
       strstr(err.msg, "Cannot start HVM template while VMs based on it are running ('k2')"),
       "a child runs: refused, naming it: %s", err.msg);
    ok(template_check_start(k1, &t, &on, 1, &err) < 0 &&
       strstr(err.msg, "Cannot start the HVM while its template is running ('t')"),
       "its template runs: refused: %s", err.msg);
    ok(template_check_start(k1, &t, none, 1, &err) == 0, "its template halted: it starts");
    ok(template_check_start(k1, NULL, NULL, 0, &err) == 0, "nothing related: it starts");
    qvm_collection_free(c);

    /* The exclusion, with domains in the test driver. */
    char base[] = "/tmp/qubes-lifecycle.XXXXXX";
    if (!mkdtemp(base))
        return 99;
    char run[sizeof base + 8];
    snprintf(run, sizeof run, "%s/run", base);
    setenv("QUBES_BASE_DIR", base, 1);
    setenv("QUBES_RUN_DIR", run, 1);
    setenv("QUBES_VMM_URI", "test:///default", 1);
    unsetenv("QUBES_OFFLINE");
    struct qubes q;
    qubes_open(&q, false, &err);
    q.coll = qvm_collection_new();
    struct qvm *tpl = add(q.coll, QVM_TEMPLATE_HVM, 1, "tpl", NULL);
    struct qvm *kid = add(q.coll, QVM_HVM, 2, "kid", "1");
    struct qvm *kid2 = add(q.coll, QVM_HVM, 3, "kid2", "1");
    struct qvm *solo = add(q.coll, QVM_HVM, 4, "solo", NULL);

    ok(qubes_template_exclusion(&q, tpl, &err) == 0, "a template starts when no child runs");
    ok(qubes_template_exclusion(&q, kid, &err) == 0, "a child starts when its template is halted");
    ok(test_domain(&q, "kid", &err) == 0, "a child's domain runs (test driver)");
    ok(qubes_template_exclusion(&q, tpl, &err) < 0 &&
       strstr(err.msg, "Cannot start HVM template while VMs based on it are running"),
       "then the template is refused: %s", err.msg);
    ok(qubes_template_exclusion(&q, kid2, &err) == 0, "a sibling may still start");
    ok(qubes_template_exclusion(&q, solo, &err) == 0, "an unrelated VM may start");
    vmm_destroy(&q.vmm, "kid", &err);
    ok(test_domain(&q, "tpl", &err) == 0, "the template's domain runs");
    ok(qubes_template_exclusion(&q, kid2, &err) < 0 &&
       strstr(err.msg, "Cannot start the HVM while its template is running"),
       "then a child is refused: %s", err.msg);

    /* Transient until the agent has answered for this very domain. */
    enum qvm_power st;
    struct vmm_domain d;
    ok(qubes_vm_power(&q, tpl, &d, &st, &err) == 0 && st == QVM_POWER_TRANSIENT,
       "a running domain whose agent has not answered is Transient");
    char path[256];
    snprintf(path, sizeof path, "%s/vms/tpl", run);
    mkdir(run, 0755);
    snprintf(path, sizeof path, "%s/vms", run);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/vms/tpl", run);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/vms/tpl/ready", run);
    FILE *f = fopen(path, "w");
    fprintf(f, "%d\n", d.id);
    fclose(f);
    free(d.name);
    ok(qubes_vm_power(&q, tpl, NULL, &st, &err) == 0 && st == QVM_POWER_RUNNING,
       "once it has (for this domain id), Running");
    f = fopen(path, "w");
    fprintf(f, "%d\n", 999999);
    fclose(f);
    ok(qubes_vm_power(&q, tpl, NULL, &st, &err) == 0 && st == QVM_POWER_TRANSIENT,
       "an answer recorded for an earlier run of the VM does not count");
    vmm_destroy(&q.vmm, "tpl", &err);
    ok(qubes_vm_power(&q, tpl, NULL, &st, &err) == 0 && st == QVM_POWER_HALTED,
       "no domain: Halted");
    ok(vmm_suspend(&q.vmm, "tpl", &err) < 0 && strstr(err.msg, "cannot pause"),
       "pausing a missing domain fails with a clear error");

    /* A DispVM being made has its record before its domain: while the
     * process that owns it lives, its template is held back. */
    add(q.coll, QVM_DISP, 5, "disp7", "1");
    snprintf(path, sizeof path, "%s/vms/disp7", run);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/vms/disp7/owner", run);
    ok(qubes_template_exclusion(&q, tpl, &err) == 0,
       "a DispVM record without a domain or an owner does not hold its template back");
    ok(qrt_owner_write(path, &err) == 0 && qubes_template_exclusion(&q, tpl, &err) < 0 &&
       strstr(err.msg, "disp7"),
       "one whose owner lives (no domain yet) does: %s", err.msg);
    f = fopen(path, "w");
    fprintf(f, "1 0\n");       /* pid 1, but not the process that started then */
    fclose(f);
    ok(qubes_template_exclusion(&q, tpl, &err) == 0, "once its owner is gone, it does not");
    qubes_close(&q);

    /* Offline, a start is refused before anything is read or touched
     * (there is no qubes.xml here at all). */
    struct qubes off;
    struct qvm_start_opts so = { .wait = false };
    ok(qubes_open(&off, true, &err) == 0 && qubes_vm_start(&off, "tpl", &so, &err) < 0 &&
       strstr(err.msg, "cannot start 'tpl'") && strstr(err.msg, "offline"),
       "offline, qvm-start is refused at once: %s", err.msg);
    qubes_close(&off);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
    if (system(cmd) != 0)
        return 99;
    return done_testing();
}
