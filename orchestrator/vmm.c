#include "vmm.h"

#include "domain.h"
#include "util.h"

#include <errno.h>

#include <dlfcn.h>
#include <stdbool.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    vmm->backend = NULL;
    strcpy(vmm->uri, cfg->vmm_uri);
    vmm->offline = cfg->offline;
}

void vmm_close(struct vmm *vmm)
{
    if (vmm->connected)
        vmm->backend->disconnect(vmm);
    vmm->connected = false;
}

int vmm_plugin_dir(char *out, size_t len, struct qerr *err)
{
    const char *env = getenv("QUBES_VMM_PLUGIN_DIR");
    if (env && *env) {
        snprintf(out, len, "%s", env);
        return 0;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n < 0)
        return qerr_errno(err, errno, "cannot find the program's directory");
    exe[n] = '\0';
    snprintf(out, len, "%s/../lib/qubes-orchestrator", dirname(exe));
    return 0;
}

void vmm_backends_available(char *out, size_t len)
{
    char dir[PATH_MAX], path[PATH_MAX + 64];
    struct qerr e;
    bool has[2] = { false, false };
    const char *files[2] = { VMM_LIBVIRT_PLUGIN, VMM_LIBXL_PLUGIN };
    if (vmm_plugin_dir(dir, sizeof dir, &e) == 0)
        for (int i = 0; i < 2; i++) {
            snprintf(path, sizeof path, "%s/%s", dir, files[i]);
            has[i] = access(path, R_OK) == 0;
        }
    snprintf(out, len, "libvirt%s, libxl%s", has[0] ? "" : " (not installed)",
             has[1] ? "" : " (not built: no xenlight at build time)");
}

/* The backend object the URI asks for: libxl for "libxl:", else libvirt. */
static int load_backend(struct vmm *vmm, struct qerr *err)
{
    char dir[PATH_MAX], path[PATH_MAX + 64];
    bool xl = strncmp(vmm->uri, VMM_LIBXL_URI_PREFIX, strlen(VMM_LIBXL_URI_PREFIX)) == 0;
    if (vmm_plugin_dir(dir, sizeof dir, err) < 0)
        return -1;
    snprintf(path, sizeof path, "%s/%s", dir, xl ? VMM_LIBXL_PLUGIN : VMM_LIBVIRT_PLUGIN);
    if (xl && access(path, F_OK) != 0)
        return qerr_set(err, "%s: this build has no libxl backend (xenlight was not found when "
                        "it was built; install libxen-dev and rebuild)", vmm->uri);
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return qerr_set(err, "cannot load the %s backend: %s", xl ? "libxl" : "libvirt", dlerror());
    const struct vmm_backend *b = dlsym(h, VMM_BACKEND_SYMBOL);
    if (!b) {
        qerr_set(err, "%s is not a hypervisor backend (no %s)", path, VMM_BACKEND_SYMBOL);
        dlclose(h);
        return -1;
    }
    /* Kept loaded for the life of the process. */
    vmm->backend = b;
    return 0;
}

int vmm_load(struct vmm *vmm, struct qerr *err)
{
    if (vmm->offline)
        return qerr_set(err, OFFLINE_MSG);
    return vmm->backend ? 0 : load_backend(vmm, err);
}

int vmm_require(struct vmm *vmm, struct qerr *err)
{
    if (vmm->offline)
        return qerr_set(err, OFFLINE_MSG);
    if (vmm->connected)
        return 0;
    if (!vmm->backend && load_backend(vmm, err) < 0)
        return -1;
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

int vmm_domain_info(struct vmm *vmm, const char *name, struct vmm_domain *out, struct qerr *err)
{
    memset(out, 0, sizeof *out);
    out->state = QVM_POWER_HALTED;
    out->id = -1;
    if (vmm->offline)
        return 0;
    if (vmm_require(vmm, err) < 0)
        return -1;
    return vmm->backend->domain_info(vmm, name, out, err);
}

#define VMM_CALL(op, ...)                                                                     \
    do {                                                                                      \
        if (vmm_require(vmm, err) < 0)                                                        \
            return -1;                                                                        \
        return vmm->backend->op(vmm, __VA_ARGS__, err);                                       \
    } while (0)

int vmm_create(struct vmm *vmm, const char *xml, struct qerr *err)
{
    VMM_CALL(create, xml);
}

int vmm_create_spec(struct vmm *vmm, const struct domain_spec *spec, struct qerr *err)
{
    if (vmm_require(vmm, err) < 0)
        return -1;
    /* A local libvirt runs QEMU as its own user: say which directory keeps
     * it out, rather than libvirt's "cannot access storage file". */
    if (geteuid() == 0 && strncmp(vmm->uri, "qemu:///system", 14) == 0) {
        const char *paths[DOMAIN_MAX_DISKS + 4] = { spec->kernel, spec->initrd, spec->serial_log,
                                                    spec->agent_socket };
        for (int i = 0; i < spec->ndisks; i++)
            paths[4 + i] = spec->disks[i].path;
        for (size_t i = 0; i < sizeof paths / sizeof *paths; i++)
            if (paths[i] && qemulator_reaches(paths[i], err) < 0)
                return -1;
    }
    if (vmm->backend->create_spec)
        return vmm->backend->create_spec(vmm, spec, err);
    char *xml = domain_xml(spec, err);
    if (!xml)
        return -1;
    int rc = vmm->backend->create(vmm, xml, err);
    free(xml);
    return rc;
}

int vmm_destroy(struct vmm *vmm, const char *name, struct qerr *err)
{
    VMM_CALL(destroy, name);
}

int vmm_suspend(struct vmm *vmm, const char *name, struct qerr *err)
{
    VMM_CALL(suspend, name);
}

int vmm_resume(struct vmm *vmm, const char *name, struct qerr *err)
{
    VMM_CALL(resume, name);
}

int vmm_host_info(struct vmm *vmm, struct vmm_host *out, struct qerr *err)
{
    VMM_CALL(host_info, out);
}

int vmm_save(struct vmm *vmm, const char *name, const char *path, struct qerr *err)
{
    VMM_CALL(save, name, path);
}

int vmm_restore(struct vmm *vmm, const char *path, struct qerr *err)
{
    VMM_CALL(restore, path);
}

int vmm_set_memory(struct vmm *vmm, const char *name, unsigned long kib, struct qerr *err)
{
    VMM_CALL(set_memory, name, kib);
}

int vmm_network_ensure(struct vmm *vmm, const char *name, struct qerr *err)
{
    VMM_CALL(network_ensure, name);
}

void vmm_domains_free(struct vmm_domain *d, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(d[i].name);
    free(d);
}

int vmm_is_test_driver(const struct vmm *vmm)
{
    return strncmp(vmm->uri, "test:", 5) == 0;
}

int vmm_shares_memory(struct vmm *vmm)
{
    struct qerr e;
    if (vmm->offline || vmm_require(vmm, &e) < 0 || !vmm->backend->shares_memory)
        return 0;
    return vmm->backend->shares_memory(vmm);
}

static int no_sharing(struct vmm *vmm, struct qerr *err)
{
    return qerr_set(err, "the %s backend at %s cannot keep a DispVM's memory shared",
                    vmm->backend->name, vmm->uri);
}

int vmm_save_device_state(struct vmm *vmm, const char *name, const char *path, struct qerr *err)
{
    if (vmm_require(vmm, err) < 0)
        return -1;
    if (!vmm->backend->save_device_state)
        return no_sharing(vmm, err);
    return vmm->backend->save_device_state(vmm, name, path, err);
}

int vmm_restore_device_state(struct vmm *vmm, const char *xml, const char *path, long long offset,
                             struct qerr *err)
{
    if (vmm_require(vmm, err) < 0)
        return -1;
    if (!vmm->backend->restore_device_state)
        return no_sharing(vmm, err);
    return vmm->backend->restore_device_state(vmm, xml, path, offset, err);
}

int vmm_domain_pid(struct vmm *vmm, const char *name)
{
    struct qerr e;
    if (vmm->offline || vmm_require(vmm, &e) < 0 || !vmm->backend->domain_pid)
        return 0;
    return vmm->backend->domain_pid(vmm, name);
}

int vmm_kill_or_destroy(struct vmm *vmm, const char *name, struct qerr *err)
{
    if (vmm_require(vmm, err) < 0)
        return -1;
    if (vmm->backend->kill && vmm->backend->kill(vmm, name) == 1)
        return 0;
    return vmm->backend->destroy(vmm, name, err);
}
