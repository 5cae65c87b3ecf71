/* The libvirt backend (QEMU/KVM, QEMU/TCG, Xen through libvirt's libxl
 * driver), built as the shared object qubes-vmm-libvirt.so that vmm.c loads
 * on first use. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "vmm.h"

static int lv_error(struct qerr *err, const char *what, const char *uri)
{
    virErrorPtr e = virGetLastError();
    return qerr_set(err, "%s (%s): %s", what, uri, e && e->message ? e->message : "unknown error");
}

/* libvirt prints every error to stderr by default; ours are reported once, by the tool. */
static void quiet(void *opaque, virErrorPtr e)
{
    (void)opaque;
    (void)e;
}

static int lv_connect(struct vmm *vmm, struct qerr *err)
{
    virSetErrorFunc(NULL, quiet);
    /* A daemon that goes away must give an error, not kill us with SIGPIPE
     * while libvirt writes to its socket. */
    signal(SIGPIPE, SIG_IGN);
    virConnectPtr conn = virConnectOpen(vmm->uri);
    if (!conn)
        return lv_error(err, "cannot connect to the hypervisor", vmm->uri);
    vmm->priv = conn;
    return 0;
}

static void lv_disconnect(struct vmm *vmm)
{
    if (vmm->priv)
        virConnectClose(vmm->priv);
    vmm->priv = NULL;
}

static enum qvm_power map_state(int st)
{
    switch (st) {
    case VIR_DOMAIN_RUNNING:
    case VIR_DOMAIN_BLOCKED:
        return QVM_POWER_RUNNING;
    case VIR_DOMAIN_PAUSED:
        return QVM_POWER_PAUSED;
    case VIR_DOMAIN_SHUTDOWN:
        return QVM_POWER_HALTING;
    case VIR_DOMAIN_SHUTOFF:
        return QVM_POWER_HALTED;
    case VIR_DOMAIN_CRASHED:
        return QVM_POWER_CRASHED;
    case VIR_DOMAIN_PMSUSPENDED:
        return QVM_POWER_SUSPENDED;
    default:
        return QVM_POWER_NA;
    }
}

static void fill_info(virDomainPtr dom, struct vmm_domain *out)
{
    virDomainInfo info;
    int state, reason;
    out->state = virDomainGetState(dom, &state, &reason, 0) < 0 ? QVM_POWER_NA : map_state(state);
    unsigned int id = virDomainGetID(dom);
    out->id = id == (unsigned int)-1 ? -1 : (int)id;
    if (virDomainGetInfo(dom, &info) == 0) {
        out->cpu_ns = info.cpuTime;
        out->mem_kib = info.memory;
    }
}

static int lv_domain_state(struct vmm *vmm, const char *name, enum qvm_power *out,
                           struct qerr *err)
{
    virDomainPtr dom = virDomainLookupByName(vmm->priv, name);
    if (!dom) {
        virErrorPtr e = virGetLastError();
        if (e && e->code == VIR_ERR_NO_DOMAIN) {
            *out = QVM_POWER_HALTED;
            return 0;
        }
        return lv_error(err, "cannot look up a domain", vmm->uri);
    }
    int state, reason;
    int r = virDomainGetState(dom, &state, &reason, 0);
    virDomainFree(dom);
    if (r < 0)
        return lv_error(err, "cannot read a domain's state", vmm->uri);
    *out = map_state(state);
    return 0;
}

static int lv_list_domains(struct vmm *vmm, struct vmm_domain **out, size_t *n,
                           struct qerr *err)
{
    virDomainPtr *doms = NULL;
    int count = virConnectListAllDomains(vmm->priv, &doms, 0);
    if (count < 0)
        return lv_error(err, "cannot list domains", vmm->uri);
    struct vmm_domain *arr = calloc((size_t)count + 1, sizeof *arr);
    int rc = 0, i;
    for (i = 0; i < count; i++) {
        int state, reason;
        if (!arr)
            goto next;
        arr[i].name = strdup(virDomainGetName(doms[i]));
        fill_info(doms[i], &arr[i]);
        (void)state, (void)reason;
        if (!arr[i].name)
            rc = -1;
    next:
        virDomainFree(doms[i]);
    }
    free(doms);
    if (!arr || rc < 0) {
        for (i = 0; arr && i < count; i++)
            free(arr[i].name);
        free(arr);
        return qerr_errno(err, ENOMEM, "listing domains");
    }
    *out = arr;
    *n = (size_t)count;
    return 0;
}

static int lv_domain_info(struct vmm *vmm, const char *name, struct vmm_domain *out,
                          struct qerr *err)
{
    virDomainPtr dom = virDomainLookupByName(vmm->priv, name);
    if (!dom) {
        virErrorPtr e = virGetLastError();
        if (e && e->code == VIR_ERR_NO_DOMAIN)
            return 0;
        return lv_error(err, "cannot look up a domain", vmm->uri);
    }
    fill_info(dom, out);
    out->name = strdup(name);
    virDomainFree(dom);
    if (!out->name)
        return qerr_errno(err, ENOMEM, "domain %s", name);
    return 0;
}

static int lv_create(struct vmm *vmm, const char *xml, struct qerr *err)
{
    virDomainPtr dom = virDomainCreateXML(vmm->priv, xml, 0);
    if (!dom)
        return lv_error(err, "cannot start the domain", vmm->uri);
    virDomainFree(dom);
    return 0;
}

/* Looks the domain up and applies one operation to it (`arg` is passed on). */
static int on_domain(struct vmm *vmm, const char *name,
                     int (*op)(virDomainPtr, const void *), const void *arg, const char *what,
                     struct qerr *err)
{
    virDomainPtr dom = virDomainLookupByName(vmm->priv, name);
    if (!dom)
        return lv_error(err, what, vmm->uri);
    int r = op(dom, arg);
    if (r < 0)
        lv_error(err, what, vmm->uri);
    virDomainFree(dom);
    return r < 0 ? -1 : 0;
}

static int do_destroy(virDomainPtr d, const void *a)
{
    (void)a;
    return virDomainDestroy(d);
}

static int do_suspend(virDomainPtr d, const void *a)
{
    (void)a;
    return virDomainSuspend(d);
}

static int do_resume(virDomainPtr d, const void *a)
{
    (void)a;
    return virDomainResume(d);
}

static int do_save(virDomainPtr d, const void *path)
{
    return virDomainSave(d, path);
}

static int do_set_memory(virDomainPtr d, const void *kib)
{
    return virDomainSetMemory(d, *(const unsigned long *)kib);
}

static int lv_destroy(struct vmm *vmm, const char *name, struct qerr *err)
{
    return on_domain(vmm, name, do_destroy, NULL, "cannot destroy the domain", err);
}

static int lv_suspend(struct vmm *vmm, const char *name, struct qerr *err)
{
    return on_domain(vmm, name, do_suspend, NULL, "cannot pause the domain", err);
}

static int lv_resume(struct vmm *vmm, const char *name, struct qerr *err)
{
    return on_domain(vmm, name, do_resume, NULL, "cannot unpause the domain", err);
}

static int lv_host_info(struct vmm *vmm, struct vmm_host *out, struct qerr *err)
{
    virNodeInfo ni;
    if (virNodeGetInfo(vmm->priv, &ni) < 0)
        return lv_error(err, "cannot read the host's resources", vmm->uri);
    out->cpus = ni.cpus;
    out->total_kib = ni.memory;
    /* The whole host's figures (/proc/meminfo), not one NUMA cell's. Free
     * counts what the kernel gives back at once: free, buffers, cache. */
    int n = 0;
    if (virNodeGetMemoryStats(vmm->priv, VIR_NODE_MEMORY_STATS_ALL_CELLS, NULL, &n, 0) == 0 &&
        n > 0) {
        virNodeMemoryStatsPtr st = calloc((size_t)n, sizeof *st);
        if (st && virNodeGetMemoryStats(vmm->priv, VIR_NODE_MEMORY_STATS_ALL_CELLS, st, &n, 0) == 0) {
            out->free_kib = 0;
            for (int i = 0; i < n; i++) {
                if (strcmp(st[i].field, VIR_NODE_MEMORY_STATS_TOTAL) == 0)
                    out->total_kib = st[i].value;
                else if (strcmp(st[i].field, VIR_NODE_MEMORY_STATS_FREE) == 0 ||
                         strcmp(st[i].field, VIR_NODE_MEMORY_STATS_BUFFERS) == 0 ||
                         strcmp(st[i].field, VIR_NODE_MEMORY_STATS_CACHED) == 0)
                    out->free_kib += st[i].value;
            }
            free(st);
            return 0;
        }
        free(st);
    }
    out->free_kib = virNodeGetFreeMemory(vmm->priv) / 1024;
    return 0;
}

static int lv_save(struct vmm *vmm, const char *name, const char *path, struct qerr *err)
{
    return on_domain(vmm, name, do_save, path, "cannot save the domain", err);
}

static int lv_restore(struct vmm *vmm, const char *path, struct qerr *err)
{
    if (virDomainRestoreFlags(vmm->priv, path, NULL, VIR_DOMAIN_SAVE_RUNNING) < 0)
        return lv_error(err, "cannot restore the domain", vmm->uri);
    return 0;
}

static int lv_set_memory(struct vmm *vmm, const char *name, unsigned long kib, struct qerr *err)
{
    return on_domain(vmm, name, do_set_memory, &kib, "cannot set the domain's memory", err);
}

__attribute__((visibility("default"))) const struct vmm_backend qubes_vmm_backend = {
    .name = "libvirt",
    .connect = lv_connect,
    .disconnect = lv_disconnect,
    .domain_state = lv_domain_state,
    .list_domains = lv_list_domains,
    .domain_info = lv_domain_info,
    .create = lv_create,
    .destroy = lv_destroy,
    .suspend = lv_suspend,
    .resume = lv_resume,
    .host_info = lv_host_info,
    .save = lv_save,
    .restore = lv_restore,
    .set_memory = lv_set_memory,
};
