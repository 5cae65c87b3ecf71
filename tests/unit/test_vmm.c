/* The hypervisor backend: lazy connection and offline mode. */
#include "../../orchestrator/vmm.h"
#include "../tap.h"

#include <stdlib.h>
#include <string.h>

int main(void)
{
    struct qubes_config cfg;
    struct qerr err;
    struct vmm vmm;
    enum qvm_power st;

    setenv("QUBES_BASE_DIR", "/nonexistent", 1);
    setenv("QUBES_OFFLINE", "1", 1);
    qubes_config_init(&cfg, &err);
    vmm_init(&vmm, &cfg);
    ok(vmm_require(&vmm, &err) < 0 && strcmp(err.msg, "VMM operations disabled in offline mode") == 0,
       "offline: hypervisor access fails with 'VMM operations disabled in offline mode'");
    ok(vmm_domain_state(&vmm, "test", &st, &err) == 0 && st == QVM_POWER_HALTED,
       "offline: every VM reads as Halted");
    ok(vmm.connects == 0, "offline: no connection is ever opened");
    vmm_close(&vmm);

    unsetenv("QUBES_OFFLINE");
    setenv("QUBES_VMM_URI", "test:///default", 1);
    qubes_config_init(&cfg, &err);
    vmm_init(&vmm, &cfg);
    ok(vmm.connects == 0 && !vmm.connected, "online: nothing is opened at start-up");
    ok(vmm_domain_state(&vmm, "test", &st, &err) == 0 && st == QVM_POWER_RUNNING,
       "the first state query connects and reads Running for the test domain");
    ok(vmm.connects == 1, "one connection");
    ok(vmm_domain_state(&vmm, "no-such-domain", &st, &err) == 0 && st == QVM_POWER_HALTED,
       "a VM without a domain is Halted");
    ok(vmm.connects == 1, "the connection is reused");
    struct vmm_domain *d;
    size_t n;
    ok(vmm_list_domains(&vmm, &d, &n, &err) == 0 && n >= 1 && strcmp(d[0].name, "test") == 0,
       "list_domains returns the driver's domains");
    vmm_domains_free(d, n);
    vmm_close(&vmm);

    setenv("QUBES_VMM_URI", "bogus+scheme:///nowhere", 1);
    qubes_config_init(&cfg, &err);
    vmm_init(&vmm, &cfg);
    ok(vmm_domain_state(&vmm, "x", &st, &err) < 0 && strstr(err.msg, "cannot connect to the hypervisor") &&
       strstr(err.msg, "bogus+scheme:///nowhere"),
       "an unusable URI gives an error naming it (%s)", err.msg);
    vmm_close(&vmm);
    return done_testing();
}
