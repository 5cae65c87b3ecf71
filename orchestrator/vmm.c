#include "vmm.h"

#include <stdlib.h>
#include <string.h>

#define OFFLINE_MSG "VMM operations disabled in offline mode"

static const char *const power_names[] = {
    [QVM_POWER_HALTED] = "Halted",
    [QVM_POWER_RUNNING] = "Running",
    [QVM_POWER_TRANSIENT] = "Transient",
    [QVM_POWER_PAUSED] = "Paused",
    [QVM_POWER_SUSPENDED] = "Suspended",
    [QVM_POWER_HALTING] = "Halting",
    [QVM_POWER_DYING] = "Dying",
    [QVM_POWER_CRASHED] = "Crashed",
    [QVM_POWER_NA] = "NA",
};

const char *qvm_power_name(enum qvm_power p)
{
    return p <= QVM_POWER_NA ? power_names[p] : "NA";
}

void vmm_init(struct vmm *vmm, const struct qubes_config *cfg)
{
    memset(vmm, 0, sizeof *vmm);
    vmm->backend = &vmm_libvirt_backend;
    strcpy(vmm->uri, cfg->vmm_uri);
    vmm->offline = cfg->offline;
}

void vmm_close(struct vmm *vmm)
{
    if (vmm->connected)
        vmm->backend->disconnect(vmm);
    vmm->connected = false;
}

int vmm_require(struct vmm *vmm, struct qerr *err)
{
    if (vmm->offline)
        return qerr_set(err, OFFLINE_MSG);
    if (vmm->connected)
        return 0;
    vmm->connects++;
    if (vmm->backend->connect(vmm, err) < 0)
        return -1;
    vmm->connected = true;
    return 0;
}

int vmm_domain_state(struct vmm *vmm, const char *name, enum qvm_power *out, struct qerr *err)
{
    if (vmm->offline) {
        *out = QVM_POWER_HALTED;
        return 0;
    }
    if (vmm_require(vmm, err) < 0)
        return -1;
    return vmm->backend->domain_state(vmm, name, out, err);
}

int vmm_list_domains(struct vmm *vmm, struct vmm_domain **out, size_t *n, struct qerr *err)
{
    if (vmm->offline) {
        *out = NULL;
        *n = 0;
        return 0;
    }
    if (vmm_require(vmm, err) < 0)
        return -1;
    return vmm->backend->list_domains(vmm, out, n, err);
}

void vmm_domains_free(struct vmm_domain *d, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(d[i].name);
    free(d);
}
