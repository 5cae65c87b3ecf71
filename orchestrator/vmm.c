#include "vmm.h"

#include "domain.h"
#include "xmlfile.h"
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

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlwriter.h>

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

/* Storage ops are optional in a backend. */
#define VMM_STORAGE_CALL(op, ...)                                                             \
    do {                                                                                      \
        if (vmm_require(vmm, err) < 0)                                                        \
            return -1;                                                                        \
        if (!vmm->backend->op)                                                                \
            return qerr_set(err, "the %s backend has no storage pools (%s)",                  \
                            vmm->backend->name, vmm->uri);                                    \
        return vmm->backend->op(vmm, __VA_ARGS__, err);                                       \
    } while (0)

int vmm_pool_ensure(struct vmm *vmm, const char *pool, const char *path, struct qerr *err)
{
    VMM_STORAGE_CALL(pool_ensure, pool, path);
}

int vmm_volume_upload(struct vmm *vmm, const char *pool, const char *name, const char *src,
                      unsigned long long size, unsigned long long *sent, struct qerr *err)
{
    VMM_STORAGE_CALL(volume_upload, pool, name, src, size, sent);
}

int vmm_volume_delete(struct vmm *vmm, const char *pool, const char *name, struct qerr *err)
{
    VMM_STORAGE_CALL(volume_delete, pool, name);
}

int vmm_volume_path(struct vmm *vmm, const char *pool, const char *name, char *out, size_t len,
                    struct qerr *err)
{
    VMM_STORAGE_CALL(volume_path, pool, name, out, len);
}

int vmm_volume_layer(struct vmm *vmm, const char *pool, const char *name, const char *backing,
                     struct qerr *err)
{
    VMM_STORAGE_CALL(volume_layer, pool, name, backing);
}

int vmm_volume_clone(struct vmm *vmm, const char *pool, const char *name, const char *from,
                     const char *from_fmt, struct qerr *err)
{
    VMM_STORAGE_CALL(volume_clone, pool, name, from, from_fmt);
}

int vmm_volume_read(struct vmm *vmm, const char *pool, const char *name, unsigned long long offset,
                    void *buf, size_t len, size_t *got, struct qerr *err)
{
    VMM_STORAGE_CALL(volume_read, pool, name, offset, buf, len, got);
}

int vmm_volume_write(struct vmm *vmm, const char *pool, const char *name,
                     unsigned long long offset, const void *buf, size_t len, struct qerr *err)
{
    VMM_STORAGE_CALL(volume_write, pool, name, offset, buf, len);
}

int vmm_volume_names(struct vmm *vmm, const char *pool, char ***names, size_t *n,
                     struct qerr *err)
{
    *names = NULL;
    *n = 0;
    VMM_STORAGE_CALL(volume_names, pool, names, n);
}

int vmm_volume_stamp(struct vmm *vmm, const char *pool, const char *name, char *out, size_t len,
                     struct qerr *err)
{
    VMM_STORAGE_CALL(volume_stamp, pool, name, out, len);
}

void vmm_names_free(char **names, size_t n)
{
    for (size_t i = 0; names && i < n; i++)
        free(names[i]);
    free(names);
}

int vmm_channel_relay(struct vmm *vmm, const char *name, const char *channel, int listen_fd,
                      struct qerr *err)
{
    if (vmm_load(vmm, err) < 0)
        return -1;
    if (vmm->connected || !vmm->backend->channel_relay)
        return qerr_set(err, "the %s backend cannot serve a guest channel here (%s)",
                        vmm->backend->name, vmm->uri);
    return vmm->backend->channel_relay(vmm, name, channel, listen_fd, err);
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

int vmm_domain_nice(struct vmm *vmm, const char *name, int nice, struct qerr *err)
{
    int pid = vmm_domain_pid(vmm, name);
    int n = pid > 0 ? qproc_set_nice(pid, nice) : 0;
    if (n < 0)
        return qerr_errno(err, errno, "%s: cannot set the priority of its emulator (pid %d) to "
                          "nice %d", name, pid, nice);
    return n;
}

int vmm_kill_or_destroy(struct vmm *vmm, const char *name, struct qerr *err)
{
    if (vmm_require(vmm, err) < 0)
        return -1;
    if (vmm->backend->kill && vmm->backend->kill(vmm, name) == 1)
        return 0;
    struct vmm_domain info;
    if (vmm_domain_info(vmm, name, &info, err) < 0)
        return -1;
    free(info.name);
    return info.state == QVM_POWER_HALTED ? 0 : vmm->backend->destroy(vmm, name, err);
}

/* ---- block devices of running domains ----
 *
 * In libvirt's terms, whichever backend speaks them: a <disk> element to
 * hot-plug or unplug, and the disks of a running domain's description. A
 * disk we attach carries the libvirt user alias "ua-TAG" (kept in the live
 * description), by which it is told from the domain's own disks. */

#define ALIAS_PREFIX "ua-"

static int check_tag(const char *tag, struct qerr *err)
{
    size_t n = strlen(tag);
    if (n == 0 || n > 60 || strspn(tag, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                       "0123456789_-") != n)
        return qerr_set(err, "disk tag '%s': letters, digits, _ and - only, at most 60", tag);
    return 0;
}

static int disk_body(xmlTextWriterPtr w, const void *ctx)
{
    return domain_write_disk(w, ctx);
}

char *vmm_disk_xml(const struct vmm_disk_spec *d, struct qerr *err)
{
    if (!d->target || !d->source)
        return qerr_set(err, "a disk needs a source and a target"), NULL;
    if (d->tag && check_tag(d->tag, err) < 0)
        return NULL;
    char alias[80];
    if (d->tag)
        snprintf(alias, sizeof alias, ALIAS_PREFIX "%s", d->tag);
    /* Raw, always: a format probed from the contents would let whoever
     * wrote them (a guest) name other files as backing files. */
    struct domain_disk_el el = { .block = d->block, .format = "raw", .source = d->source,
                                 .target = d->target, .readonly = d->readonly,
                                 .alias = d->tag ? alias : NULL };
    char *out = qxml_build(disk_body, &el, NULL, false);
    if (!out && errno == EIO)
        qerr_set(err, "disk XML of %s: libxml2 writer failed", d->source);
    else if (!out)
        qerr_errno(err, ENOMEM, "disk XML of %s", d->source);
    return out;
}

static xmlNode *child(xmlNode *n, const char *name)
{
    for (xmlNode *c = n ? n->children : NULL; c; c = c->next)
        if (c->type == XML_ELEMENT_NODE && strcmp((const char *)c->name, name) == 0)
            return c;
    return NULL;
}

/* A malloc'ed copy of an attribute, NULL when absent. */
static char *attr(xmlNode *n, const char *name)
{
    xmlChar *v = n ? xmlGetProp(n, (const xmlChar *)name) : NULL;
    char *s = v ? strdup((const char *)v) : NULL;
    xmlFree(v);
    return s;
}

struct disk_list {
    struct vmm_disk *d;
    size_t n, cap;
};

static struct vmm_disk *disk_add(struct disk_list *l)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        struct vmm_disk *bigger = realloc(l->d, cap * sizeof *bigger);
        if (!bigger)
            return NULL;
        l->d = bigger;
        l->cap = cap;
    }
    struct vmm_disk *d = &l->d[l->n++];
    memset(d, 0, sizeof *d);
    return d;
}

/* The source of a <disk> or <backingStore>, a file or a block device
 * (others, such as network disks, have none); -1 when out of memory. */
static int disk_source(xmlNode *n, struct vmm_disk *d)
{
    char *type = attr(n, "type");
    bool file = type && strcmp(type, "file") == 0;
    d->block = type && strcmp(type, "block") == 0;
    free(type);
    xmlNode *src = child(n, "source");
    const char *key = d->block ? "dev" : "file";
    if (!src || !(file || d->block) || !xmlHasProp(src, (const xmlChar *)key))
        return 0;
    d->source = attr(src, key);
    return d->source ? 0 : -1;
}

static int add_disk(struct disk_list *l, xmlNode *disk)
{
    struct vmm_disk *d = disk_add(l);
    if (!d)
        return -1;
    xmlNode *target = child(disk, "target"), *alias = child(disk, "alias");
    d->target = attr(target, "dev");
    d->readonly = child(disk, "readonly") != NULL;
    if (disk_source(disk, d) < 0 || (target && !d->target))
        return -1;
    char *a = attr(alias, "name");
    if (a && strncmp(a, ALIAS_PREFIX, strlen(ALIAS_PREFIX)) == 0) {
        d->tag = strdup(a + strlen(ALIAS_PREFIX));
        if (!d->tag) {
            free(a);
            return -1;
        }
    }
    free(a);
    /* Its backing chain, each file read-only under the disk. */
    for (xmlNode *b = child(disk, "backingStore"); b; b = child(b, "backingStore")) {
        if (!xmlHasProp(b, (const xmlChar *)"type"))
            break;      /* <backingStore/>: the end of the chain */
        struct vmm_disk *f = disk_add(l);
        if (!f)
            return -1;
        f->backing = f->readonly = true;
        if (disk_source(b, f) < 0)
            return -1;
    }
    return 0;
}

int vmm_disks_from_xml(const char *xml, struct vmm_disk **out, size_t *n, struct qerr *err)
{
    *out = NULL;
    *n = 0;
    xmlDocPtr doc = xmlReadMemory(xml, (int)strlen(xml), "domain.xml", NULL,
                                  XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    if (!doc)
        return qerr_set(err, "the hypervisor's description of a domain is not XML");
    xmlNode *root = xmlDocGetRootElement(doc);
    struct disk_list l = { 0 };
    int rc = 0;
    if (!root || strcmp((const char *)root->name, "domain") != 0)
        rc = qerr_set(err, "the hypervisor's description of a domain has no <domain>");
    xmlNode *devices = rc == 0 ? child(root, "devices") : NULL;
    for (xmlNode *c = devices ? devices->children : NULL; c && rc == 0; c = c->next)
        if (c->type == XML_ELEMENT_NODE && strcmp((const char *)c->name, "disk") == 0 &&
            add_disk(&l, c) < 0)
            rc = qerr_errno(err, ENOMEM, "reading a domain's disks");
    xmlFreeDoc(doc);
    if (rc < 0) {
        vmm_disks_free(l.d, l.n);
        return -1;
    }
    *out = l.d;
    *n = l.n;
    return 0;
}

void vmm_disks_free(struct vmm_disk *d, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(d[i].target);
        free(d[i].source);
        free(d[i].tag);
    }
    free(d);
}

static int no_hotplug(struct vmm *vmm, struct qerr *err)
{
    return qerr_set(err, "the %s backend at %s cannot hot-plug block devices", vmm->backend->name,
                    vmm->uri);
}

int vmm_domain_disks(struct vmm *vmm, const char *name, struct vmm_disk **out, size_t *n,
                     struct qerr *err)
{
    *out = NULL;
    *n = 0;
    if (vmm_require(vmm, err) < 0)
        return -1;
    if (!vmm->backend->live_xml)
        return no_hotplug(vmm, err);
    char *xml = NULL;
    if (vmm->backend->live_xml(vmm, name, &xml, err) < 0)
        return -1;
    if (!xml)
        return 0;       /* not running */
    int rc = vmm_disks_from_xml(xml, out, n, err);
    free(xml);
    return rc < 0 ? qerr_prefix(err, "domain %s", name) : 0;
}

/* For the local system daemon, whose QEMU runs as its own user: as
 * vmm_create_spec does for a domain's files. */
static bool local_system(const struct vmm *vmm)
{
    return geteuid() == 0 && strncmp(vmm->uri, "qemu:///system", 14) == 0;
}

int vmm_attach_disk(struct vmm *vmm, const char *name, const struct vmm_disk_spec *d,
                    struct qerr *err)
{
    if (vmm_require(vmm, err) < 0)
        return -1;
    if (!vmm->backend->attach_device)
        return no_hotplug(vmm, err);
    if (local_system(vmm) && qemulator_reaches(d->source, err) < 0)
        return -1;
    char *xml = vmm_disk_xml(d, err);
    if (!xml)
        return -1;
    int rc = vmm->backend->attach_device(vmm, name, xml, err);
    free(xml);
    return rc;
}

int vmm_detach_disk(struct vmm *vmm, const char *name, const struct vmm_disk_spec *d,
                    struct qerr *err)
{
    if (vmm_require(vmm, err) < 0)
        return -1;
    if (!vmm->backend->detach_device)
        return no_hotplug(vmm, err);
    char *xml = vmm_disk_xml(d, err);
    if (!xml)
        return -1;
    int rc = vmm->backend->detach_device(vmm, name, xml, err);
    free(xml);
    return rc;
}
