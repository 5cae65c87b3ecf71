#include "power.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime.h"
#include "util.h"

bool qvm_power_is_running(enum qvm_power p)
{
    return p != QVM_POWER_HALTED && p != QVM_POWER_NA;
}

/* The domain id a mark of the VM's run directory holds, -1 when none. */
static int mark_id(const struct qubes_config *cfg, const char *name, const char *file)
{
    char path[PATH_MAX], text[32];
    if (qrt_vm_path(cfg, name, file, path, sizeof path, NULL) < 0 ||
        qread_small(path, text, sizeof text) < 0 || !text[0])
        return -1;
    return atoi(text);
}

static int ready_id(const struct qubes_config *cfg, const char *name)
{
    return mark_id(cfg, name, QRT_READY);
}

enum qvm_power qvm_power_refine(const struct qubes_config *cfg, const struct qvm *vm,
                                const struct vmm_domain *d)
{
    if (vm->cls == QVM_ADMIN)
        return QVM_POWER_RUNNING;
    if (d->state == QVM_POWER_RUNNING && ready_id(cfg, vm->name) != d->id)
        return QVM_POWER_TRANSIENT;
    return d->state;
}

int qvm_power_get(struct vmm *vmm, const struct qubes_config *cfg, const struct qvm *vm,
                  struct vmm_domain *info, enum qvm_power *out, struct qerr *err)
{
    struct vmm_domain local;
    struct vmm_domain *d = info ? info : &local;
    if (vm->cls == QVM_ADMIN) {
        memset(d, 0, sizeof *d);
        *out = QVM_POWER_RUNNING;
        return 0;
    }
    if (vmm_domain_info(vmm, vm->name, d, err) < 0)
        return -1;
    *out = qvm_power_refine(cfg, vm, d);
    if (!info)
        free(d->name);
    return 0;
}

void qvm_power_mark_ready(const struct qubes_config *cfg, const char *name, int id)
{
    char path[PATH_MAX], text[32];
    snprintf(text, sizeof text, "%d\n", id);
    if (qrt_vm_path(cfg, name, QRT_READY, path, sizeof path, NULL) == 0)
        qwrite_runtime_file(path, text, NULL);
}

void qvm_power_clear_ready(const struct qubes_config *cfg, const char *name)
{
    char path[PATH_MAX];
    if (qrt_vm_path(cfg, name, QRT_READY, path, sizeof path, NULL) == 0)
        unlink(path);
    qvm_power_clear_paused(cfg, name);
}

int qvm_power_mark_paused(const struct qubes_config *cfg, const char *name, int id,
                          struct qerr *err)
{
    char path[PATH_MAX], text[32];
    snprintf(text, sizeof text, "%d\n", id);
    if (qrt_vm_path(cfg, name, QRT_PAUSED, path, sizeof path, err) < 0 ||
        qwrite_runtime_file(path, text, err) < 0)
        return qerr_prefix(err, "cannot mark '%s' paused", name);
    return 0;
}

bool qvm_power_paused_mark(const struct qubes_config *cfg, const char *name, int *id)
{
    char path[PATH_MAX];
    if (qrt_vm_path(cfg, name, QRT_PAUSED, path, sizeof path, NULL) < 0)
        return true;            /* no name to look under: never trust the socket */
    bool marked = access(path, F_OK) == 0 || errno != ENOENT;
    if (id)
        *id = marked ? mark_id(cfg, name, QRT_PAUSED) : -1;
    return marked;
}

void qvm_power_clear_paused(const struct qubes_config *cfg, const char *name)
{
    char path[PATH_MAX];
    if (qrt_vm_path(cfg, name, QRT_PAUSED, path, sizeof path, NULL) == 0)
        unlink(path);
}
