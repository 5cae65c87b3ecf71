/* The libxl backend: Xen through libxenlight directly, without a libvirt
 * daemon, built as the shared object qubes-vmm-libxl.so that vmm.c loads
 * for QUBES_VMM_URI "libxl://". Domains are created from their description
 * (libxl_config.c), never from libvirt XML. Every libxl call here is
 * synchronous (no ao_how): the tools do one thing and exit. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libxl.h>
#include <libxl_utils.h>
#include <xentoollog.h>

#include "ifconf.h"
#include "libxl_config.h"
#include "util.h"
#include "vmm.h"

/* libxl reports why through its logger and returns a bare code; ours keeps
 * the last error line so that the tool's one message can say why. */
struct capture {
    xentoollog_logger vtable;
    char last[512];
};

struct qxl {
    libxl_ctx *ctx;
    struct capture log;
};

/* The project's own children (the programs it runs, detached teardowns)
 * are reaped by the project with waitpid; libxl may reap only its own. */
static const libxl_childproc_hooks child_hooks = {
    .chldowner = libxl_sigchld_owner_libxl_always_selective_reap,
};

static void capture_vmessage(xentoollog_logger *lg, xentoollog_level level, int errnoval,
                             const char *context, const char *fmt, va_list ap)
{
    struct capture *c = (struct capture *)lg;
    if (level < XTL_ERROR)
        return;
    char msg[sizeof c->last];
    vsnprintf(msg, sizeof msg, fmt, ap);
    /* libxl's lines start with "file.c:line:function: "; the rest is the reason. */
    const char *why = msg;
    for (int colons = 0, i = 0; msg[i] && colons < 3; i++)
        if (msg[i] == ':' && ++colons == 3)
            why = msg + i + 1 + (msg[i + 1] == ' ');
    if (strncmp(msg, "libxl", 5) != 0 || why == msg)
        why = msg;
    if (errnoval > 0)
        snprintf(c->last, sizeof c->last, "%s%s%s: %s", context ? context : "",
                 context ? ": " : "", why, strerror(errnoval));
    else
        snprintf(c->last, sizeof c->last, "%s%s%s", context ? context : "",
                 context ? ": " : "", why);
}

static void capture_destroy(xentoollog_logger *lg)
{
    (void)lg;
}

static struct qxl *X(struct vmm *vmm)
{
    return vmm->priv;
}

/* "WHAT (URI): REASON", the reason from libxl's log when it gave one. */
static int xl_error(struct vmm *vmm, struct qerr *err, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int xl_error(struct vmm *vmm, struct qerr *err, int rc, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    const char *why = X(vmm)->log.last[0] ? X(vmm)->log.last : libxl_error_to_string(rc);
    return qerr_set(err, "%s (%s): %s", what, vmm->uri, why ? why : "unknown error");
}

static void forget_log(struct vmm *vmm)
{
    X(vmm)->log.last[0] = '\0';
}

static int xl_connect(struct vmm *vmm, struct qerr *err)
{
    struct qxl *x = calloc(1, sizeof *x);
    if (!x)
        return qerr_errno(err, ENOMEM, "%s", vmm->uri);
    x->log.vtable.vmessage = capture_vmessage;
    x->log.vtable.destroy = capture_destroy;
    int rc = libxl_ctx_alloc(&x->ctx, LIBXL_VERSION, 0, &x->log.vtable);
    if (rc != 0) {
        /* Without Xen, the context cannot open the hypervisor's command
         * interface; say so rather than pass on libxc's ENOENT. */
        if (access("/proc/xen", F_OK) != 0 && access("/dev/xen/privcmd", F_OK) != 0)
            qerr_set(err, "%s: cannot open libxl: this host does not run Xen (no /proc/xen or "
                     "hypervisor interface)", vmm->uri);
        else
            qerr_set(err, "%s: cannot open libxl: %s", vmm->uri,
                     x->log.last[0] ? x->log.last : libxl_error_to_string(rc));
        libxl_ctx_free(x->ctx);
        free(x);
        return -1;
    }
    libxl_childproc_setmode(x->ctx, &child_hooks, NULL);
    vmm->priv = x;
    return 0;
}

static void xl_disconnect(struct vmm *vmm)
{
    struct qxl *x = X(vmm);
    if (x) {
        libxl_ctx_free(x->ctx);
        free(x);
    }
    vmm->priv = NULL;
}

static enum qvm_power map_state(const libxl_dominfo *d)
{
    if (d->dying)
        return QVM_POWER_DYING;
    if (d->shutdown)
        return d->shutdown_reason == LIBXL_SHUTDOWN_REASON_CRASH ? QVM_POWER_CRASHED
               : d->shutdown_reason == LIBXL_SHUTDOWN_REASON_SUSPEND ? QVM_POWER_SUSPENDED
                                                                     : QVM_POWER_HALTING;
    if (d->paused)
        return QVM_POWER_PAUSED;
    /* running, blocked, or runnable and waiting for a CPU */
    return QVM_POWER_RUNNING;
}

static void fill_info(const libxl_dominfo *d, struct vmm_domain *out)
{
    out->state = map_state(d);
    out->id = (int)d->domid;
    out->cpu_ns = d->cpu_time;
    out->mem_kib = (unsigned long)d->current_memkb;
}

/* 1 with *info filled when the domain exists, 0 when it does not, -1 on error. */
static int lookup(struct vmm *vmm, const char *name, libxl_dominfo *info, struct qerr *err)
{
    uint32_t domid;
    forget_log(vmm);
    /* No such name is ERROR_INVAL; a failed listing is another code. */
    int rc = libxl_name_to_domid(X(vmm)->ctx, name, &domid);
    if (rc == ERROR_INVAL)
        return 0;
    if (rc != 0)
        return xl_error(vmm, err, rc, "cannot look up domain %s", name);
    rc = libxl_domain_info(X(vmm)->ctx, info, domid);
    if (rc == ERROR_DOMAIN_NOTFOUND)
        return 0;
    if (rc != 0)
        return xl_error(vmm, err, rc, "cannot read domain %s", name);
    return 1;
}

static int need_domid(struct vmm *vmm, const char *name, uint32_t *domid, const char *what,
                      struct qerr *err)
{
    libxl_dominfo info;
    libxl_dominfo_init(&info);
    int r = lookup(vmm, name, &info, err);
    *domid = info.domid;
    libxl_dominfo_dispose(&info);
    if (r == 0)
        return qerr_set(err, "%s %s (%s): no such domain", what, name, vmm->uri);
    return r < 0 ? -1 : 0;
}

static int xl_domain_state(struct vmm *vmm, const char *name, enum qvm_power *out,
                           struct qerr *err)
{
    libxl_dominfo info;
    libxl_dominfo_init(&info);
    int r = lookup(vmm, name, &info, err);
    if (r >= 0)
        *out = r ? map_state(&info) : QVM_POWER_HALTED;
    libxl_dominfo_dispose(&info);
    return r < 0 ? -1 : 0;
}

static int xl_list_domains(struct vmm *vmm, struct vmm_domain **out, size_t *n,
                           struct qerr *err)
{
    int count = 0;
    forget_log(vmm);
    libxl_dominfo *list = libxl_list_domain(X(vmm)->ctx, &count);
    if (!list)
        return xl_error(vmm, err, ERROR_FAIL, "cannot list domains");
    struct vmm_domain *arr = calloc((size_t)count + 1, sizeof *arr);
    size_t k = 0;
    for (int i = 0; arr && i < count; i++) {
        /* A domain that went away meanwhile has no name any more. */
        char *name = libxl_domid_to_name(X(vmm)->ctx, list[i].domid);
        if (!name)
            continue;
        arr[k].name = name;
        fill_info(&list[i], &arr[k]);
        k++;
    }
    libxl_dominfo_list_free(list, count);
    if (!arr)
        return qerr_errno(err, ENOMEM, "listing domains");
    *out = arr;
    *n = k;
    return 0;
}

static int xl_domain_info(struct vmm *vmm, const char *name, struct vmm_domain *out,
                          struct qerr *err)
{
    libxl_dominfo info;
    libxl_dominfo_init(&info);
    int r = lookup(vmm, name, &info, err);
    if (r > 0)
        fill_info(&info, out);
    libxl_dominfo_dispose(&info);
    if (r <= 0)
        return r;
    out->name = strdup(name);
    if (!out->name)
        return qerr_errno(err, ENOMEM, "domain %s", name);
    return 0;
}

static int xl_create(struct vmm *vmm, const char *xml, struct qerr *err)
{
    (void)xml;
    return qerr_set(err, "%s: starting a domain from libvirt XML is not supported by the libxl "
                    "backend", vmm->uri);
}

/* Created paused by libxl, then let run: as libvirt's create does. */
static int start_config(struct vmm *vmm, libxl_domain_config *c, int restore_fd,
                        const char *name, struct qerr *err)
{
    uint32_t domid = INVALID_DOMID;
    int rc;
    forget_log(vmm);
    if (restore_fd < 0) {
        rc = libxl_domain_create_new(X(vmm)->ctx, c, &domid, NULL, NULL);
    } else {
        libxl_domain_restore_params params;
        libxl_domain_restore_params_init(&params);
        /* libxl_domain_suspend writes the version 2 stream. */
        params.stream_version = 2;
        rc = libxl_domain_create_restore(X(vmm)->ctx, c, &domid, restore_fd, -1, &params, NULL,
                                         NULL);
        libxl_domain_restore_params_dispose(&params);
    }
    if (rc != 0)
        return xl_error(vmm, err, rc, "cannot %s domain %s", restore_fd < 0 ? "start" : "restore",
                        name);
    rc = libxl_domain_unpause(X(vmm)->ctx, domid, NULL);
    if (rc != 0) {
        xl_error(vmm, err, rc, "cannot unpause domain %s", name);
        libxl_domain_destroy(X(vmm)->ctx, domid, NULL);
        return -1;
    }
    return 0;
}

static int xl_create_spec(struct vmm *vmm, const struct domain_spec *spec, struct qerr *err)
{
    libxl_domain_config c;
    libxl_domain_config_init(&c);
    int rc = qxl_config_from_spec(spec, &c, err);
    if (rc == 0)
        rc = start_config(vmm, &c, -1, spec->name, err);
    libxl_domain_config_dispose(&c);
    return rc;
}

/* One libxl call on the domain `name`: destroy, pause or unpause. */
static int on_domid(struct vmm *vmm, const char *name,
                    int (*op)(libxl_ctx *, uint32_t, const libxl_asyncop_how *), const char *what,
                    struct qerr *err)
{
    uint32_t domid;
    if (need_domid(vmm, name, &domid, what, err) < 0)
        return -1;
    int rc = op(X(vmm)->ctx, domid, NULL);
    return rc ? xl_error(vmm, err, rc, "%s %s", what, name) : 0;
}

static int xl_destroy(struct vmm *vmm, const char *name, struct qerr *err)
{
    return on_domid(vmm, name, libxl_domain_destroy, "cannot destroy domain", err);
}

static int xl_suspend(struct vmm *vmm, const char *name, struct qerr *err)
{
    return on_domid(vmm, name, libxl_domain_pause, "cannot pause domain", err);
}

static int xl_resume(struct vmm *vmm, const char *name, struct qerr *err)
{
    return on_domid(vmm, name, libxl_domain_unpause, "cannot unpause domain", err);
}

static int xl_host_info(struct vmm *vmm, struct vmm_host *out, struct qerr *err)
{
    libxl_physinfo pi;
    libxl_physinfo_init(&pi);
    forget_log(vmm);
    int rc = libxl_get_physinfo(X(vmm)->ctx, &pi);
    if (rc == 0) {
        /* Xen's pages are 4 KiB on x86. Free is what Xen can give a new
         * domain now; dom0's own free memory is not Xen's. */
        out->total_kib = pi.total_pages * 4;
        out->free_kib = pi.free_pages * 4;
        out->cpus = pi.nr_cpus;
    }
    libxl_physinfo_dispose(&pi);
    return rc ? xl_error(vmm, err, rc, "cannot read the host's resources") : 0;
}

/* ---- save and restore ----
 *
 * libxl's stream carries the domain's memory and device state but not its
 * configuration, which libxl_domain_create_restore needs again. save keeps
 * it beside the savefile, as `PATH.json` (libxl's own JSON form of
 * libxl_domain_config), and restore reads it from there. A savefile
 * without it (one written by the libvirt backend, or a DispVM clone made
 * from one) cannot be restored by this backend. */

static int companion(char *out, size_t len, const char *path, const char *suffix,
                     struct qerr *err)
{
    if ((size_t)snprintf(out, len, "%s.json%s", path, suffix) >= len)
        return qerr_set(err, "savefile path too long: %s", path);
    return 0;
}

static int write_config(struct vmm *vmm, uint32_t domid, const char *name, const char *path,
                        struct qerr *err)
{
    char json_path[PATH_MAX];
    if (companion(json_path, sizeof json_path, path, "", err) < 0)
        return -1;
    libxl_domain_config c;
    libxl_domain_config_init(&c);
    forget_log(vmm);
    int rc = libxl_retrieve_domain_configuration(X(vmm)->ctx, domid, &c, NULL);
    char *json = rc == 0 ? libxl_domain_config_to_json(X(vmm)->ctx, &c) : NULL;
    libxl_domain_config_dispose(&c);
    char *text = NULL;
    if (!json || asprintf(&text, "%s\n", json) < 0) {
        free(json);
        return xl_error(vmm, err, rc ? rc : ERROR_NOMEM, "cannot read the configuration of %s",
                        name);
    }
    free(json);
    rc = qwrite_file_atomic(json_path, text, strlen(text), 0600, err);
    free(text);
    return rc;
}

static int xl_save(struct vmm *vmm, const char *name, const char *path, struct qerr *err)
{
    uint32_t domid;
    char json_path[PATH_MAX];
    if (need_domid(vmm, name, &domid, "cannot save domain", err) < 0 ||
        companion(json_path, sizeof json_path, path, "", err) < 0)
        return -1;
    if (write_config(vmm, domid, name, path, err) < 0)
        return -1;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        qerr_errno(err, errno, "cannot create the savefile %s", path);
        unlink(json_path);
        return -1;
    }
    forget_log(vmm);
    int rc = libxl_domain_suspend(X(vmm)->ctx, domid, fd, 0, NULL);
    if (rc == 0 && fsync(fd) < 0)
        qerr_errno(err, errno, "cannot write the savefile %s", path), rc = ERROR_FAIL;
    else if (rc != 0)
        xl_error(vmm, err, rc, "cannot save domain %s", name);
    close(fd);
    if (rc != 0) {
        unlink(path);
        unlink(json_path);
        /* A failed suspend leaves the domain as it was: let it run on. */
        libxl_domain_resume(X(vmm)->ctx, domid, 1, NULL);
        return -1;
    }
    /* Saved, the domain is suspended; like libvirt's save, it stops. */
    libxl_domain_destroy(X(vmm)->ctx, domid, NULL);
    return 0;
}

static char *read_file(const char *path, struct qerr *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    char *text = fd >= 0 ? qread_fd(fd, NULL) : NULL;
    int e = errno;
    if (fd >= 0)
        close(fd);
    if (!text && fd < 0 && e == ENOENT)
        qerr_set(err, "%s is missing: the libxl backend restores only savefiles it wrote "
                 "(their configuration is kept beside them)", path);
    else if (!text)
        qerr_errno(err, e, "cannot read %s", path);
    return text;
}

static int xl_restore(struct vmm *vmm, const char *path, struct qerr *err)
{
    char json_path[PATH_MAX];
    if (companion(json_path, sizeof json_path, path, "", err) < 0)
        return -1;
    char *json = read_file(json_path, err);
    if (!json)
        return -1;
    libxl_domain_config c;
    libxl_domain_config_init(&c);
    forget_log(vmm);
    int rc = libxl_domain_config_from_json(X(vmm)->ctx, &c, json);
    free(json);
    if (rc != 0) {
        xl_error(vmm, err, rc, "cannot read the domain configuration %s", json_path);
        libxl_domain_config_dispose(&c);
        return -1;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        qerr_errno(err, errno, "cannot open the savefile %s", path);
        libxl_domain_config_dispose(&c);
        return -1;
    }
    char name[256];
    snprintf(name, sizeof name, "%s", c.c_info.name ? c.c_info.name : "(unnamed)");
    rc = start_config(vmm, &c, fd, name, err);
    close(fd);
    libxl_domain_config_dispose(&c);
    return rc;
}

static int xl_set_memory(struct vmm *vmm, const char *name, unsigned long kib, struct qerr *err)
{
    uint32_t domid;
    if (need_domid(vmm, name, &domid, "cannot set the memory of domain", err) < 0)
        return -1;
    /* Absolute, and enforced: the balloon target and Xen's limit together. */
    int rc = libxl_set_memory_target(X(vmm)->ctx, domid, (int64_t)kib, 0, 1);
    return rc ? xl_error(vmm, err, rc, "cannot set the memory of domain %s", name) : 0;
}

/* libxl has no networks: the bridge itself, with no address and IPv6 off
 * (no link-local address either), before it comes up. */
static int xl_network_ensure(struct vmm *vmm, const char *name, struct qerr *err)
{
    (void)vmm;
    char path[128];
    if (ifconf_bridge_add(name) < 0)
        return qerr_errno(err, errno, "cannot create the bridge %s", name);
    snprintf(path, sizeof path, "/proc/sys/net/ipv6/conf/%s/disable_ipv6", name);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t w = write(fd, "1", 1);
        close(fd);
        if (w != 1)
            return qerr_errno(err, errno, "cannot turn IPv6 off on %s", name);
    }
    if (ifconf_up(name) < 0)
        return qerr_errno(err, errno, "cannot bring the bridge %s up", name);
    return 0;
}

/* Shared-memory DispVMs, the emulator's pid and a quick kill are QEMU
 * matters of the libvirt backend: vmm.c falls back or says so when NULL. */
__attribute__((visibility("default"))) const struct vmm_backend qubes_vmm_backend = {
    .name = "libxl",
    .connect = xl_connect,
    .disconnect = xl_disconnect,
    .domain_state = xl_domain_state,
    .list_domains = xl_list_domains,
    .domain_info = xl_domain_info,
    .create = xl_create,
    .create_spec = xl_create_spec,
    .destroy = xl_destroy,
    .suspend = xl_suspend,
    .resume = xl_resume,
    .host_info = xl_host_info,
    .save = xl_save,
    .restore = xl_restore,
    .set_memory = xl_set_memory,
    .network_ensure = xl_network_ensure,
};
