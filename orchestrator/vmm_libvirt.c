/* The libvirt backend (QEMU/KVM, QEMU/TCG, Xen through libvirt's libxl
 * driver), built as the shared object qubes-vmm-libvirt.so that vmm.c loads
 * on first use. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include <libvirt/libvirt-qemu.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "timing.h"
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

static int do_destroy(virDomainPtr d, const void *a)
{
    (void)a;
    return virDomainDestroy(d);
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

/* ---- shared-memory DispVMs: QEMU only ----
 *
 * The domain's RAM is a file of ours (domain_spec.mem_file). Saving with
 * QEMU's migration capability x-ignore-shared leaves RAM mapped shared out
 * of the stream, so the savefile holds device state only. A clone maps the
 * file private (copy-on-write) and receives that device state through
 * QEMU's deferred incoming migration: libvirt has no API for either, so
 * both go through its QEMU monitor passthrough (libvirt then marks the
 * domain tainted, "custom-monitor"). */

static int lv_shares_memory(struct vmm *vmm)
{
    const char *type = virConnectGetType(vmm->priv);
    return type && strcmp(type, "QEMU") == 0;
}

static int qmp(virDomainPtr dom, const char *cmd, char **reply)
{
    char *r = NULL;
    int rc = virDomainQemuMonitorCommand(dom, cmd, &r, 0);
    /* An error reply is a reply too. */
    if (rc == 0 && r && strstr(r, "\"error\""))
        rc = -1;
    if (reply)
        *reply = r;
    else
        free(r);
    return rc;
}

static const char IGNORE_SHARED[] =
    "{\"execute\":\"migrate-set-capabilities\",\"arguments\":{\"capabilities\":"
    "[{\"capability\":\"x-ignore-shared\",\"state\":true}]}}";

static int qmp_error(struct qerr *err, const char *what, char *reply, const char *uri)
{
    int rc = reply ? qerr_set(err, "%s: %s", what, reply) : lv_error(err, what, uri);
    free(reply);
    return rc;
}

static int lv_save_device_state(struct vmm *vmm, const char *name, const char *path,
                                struct qerr *err)
{
    virDomainPtr dom = virDomainLookupByName(vmm->priv, name);
    if (!dom)
        return lv_error(err, "cannot save the domain", vmm->uri);
    char *reply = NULL;
    int rc = 0;
    if (qmp(dom, IGNORE_SHARED, &reply) < 0)
        rc = qmp_error(err, "cannot leave shared memory out of the save", reply, vmm->uri);
    else if ((free(reply), virDomainSave(dom, path) < 0))
        rc = lv_error(err, "cannot save the domain", vmm->uri);
    virDomainFree(dom);
    return rc;
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000;
}

static int lv_restore_device_state(struct vmm *vmm, const char *xml, const char *path,
                                   long long offset, struct qerr *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return qerr_errno(err, errno, "cannot open the savefile %s", path);
    if (lseek(fd, (off_t)offset, SEEK_SET) != (off_t)offset) {
        close(fd);
        return qerr_errno(err, errno, "cannot seek in the savefile %s", path);
    }
    struct qtime_step ts;
    qtime_from_env("libvirt backend");  /* this request's, in a worker that serves many */
    qtime_begin(&ts);
    virDomainPtr dom = virDomainCreateXML(vmm->priv, xml, VIR_DOMAIN_START_PAUSED);
    if (!dom) {
        close(fd);
        qtime_release();
        return lv_error(err, "cannot create the domain to restore", vmm->uri);
    }
    qtime_end(&ts, "  libvirt: domain created (paused)");
    qtime_begin(&ts);
    char *reply = NULL;
    int rc = -1;
    if (qmp(dom, IGNORE_SHARED, &reply) < 0) {
        qmp_error(err, "cannot set up the restore", reply, vmm->uri);
        goto out;
    }
    free(reply);
    reply = NULL;
    if (virDomainQemuMonitorCommandWithFiles(dom, "{\"execute\":\"getfd\",\"arguments\":"
                                             "{\"fdname\":\"qubes-state\"}}",
                                             1, &fd, NULL, NULL, &reply, 0) < 0 ||
        (reply && strstr(reply, "\"error\""))) {
        qmp_error(err, "cannot hand the savefile to QEMU", reply, vmm->uri);
        goto out;
    }
    free(reply);
    reply = NULL;
    if (qmp(dom, "{\"execute\":\"migrate-incoming\",\"arguments\":{\"uri\":\"fd:qubes-state\"}}",
            &reply) < 0) {
        qmp_error(err, "cannot load the device state", reply, vmm->uri);
        goto out;
    }
    free(reply);
    reply = NULL;
    /* Device state only: this takes tens of milliseconds. */
    for (long deadline = now_ms() + 60000;;) {
        if (qmp(dom, "{\"execute\":\"query-migrate\"}", &reply) < 0) {
            qmp_error(err, "cannot follow the restore", reply, vmm->uri);
            goto out;
        }
        if (strstr(reply, "\"completed\"")) {
            rc = 0;
            qtime_end(&ts, "  QMP: device state loaded");
            break;
        }
        if (strstr(reply, "\"failed\"") || now_ms() > deadline) {
            qerr_set(err, "restoring %s failed: %s", path, reply);
            break;
        }
        free(reply);
        reply = NULL;
        usleep(2000);
    }
out:
    free(reply);
    close(fd);
    if (rc < 0)
        virDomainDestroy(dom);
    virDomainFree(dom);
    qtime_release();
    return rc;
}

/* The QEMU process of a domain of the local system daemon: its pid file,
 * checked against the process's command line. */
static int lv_domain_pid(struct vmm *vmm, const char *name)
{
    if (strcmp(vmm->uri, "qemu:///system") != 0 || strchr(name, '/'))
        return 0;
    char path[PATH_MAX], buf[4096], needle[128];
    snprintf(path, sizeof path, "/run/libvirt/qemu/%s.pid", name);
    FILE *f = fopen(path, "re");
    long pid = 0;
    if (!f)
        return 0;
    if (fscanf(f, "%ld", &pid) != 1)
        pid = 0;
    fclose(f);
    if (pid <= 1)
        return 0;
    snprintf(path, sizeof path, "/proc/%ld/cmdline", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    for (ssize_t i = 0; i < n; i++)
        if (buf[i] == '\0')
            buf[i] = ' ';
    buf[n] = '\0';
    snprintf(needle, sizeof needle, "guest=%s,", name);
    return strstr(buf, needle) ? (int)pid : 0;
}

/* libvirt's destroy signals QEMU and, when the process is still there
 * (a zombie not yet reaped counts), sleeps 200 ms before it looks again;
 * its own clean-up after QEMU's monitor closes does the same. Killing QEMU
 * and returning once it has exited (its memory and files released) leaves
 * libvirt to forget the domain by itself (within those 200 ms: a lookup
 * meanwhile waits for it), and the caller need not wait. The process is
 * held by a pidfd (and checked again once held), signalled through it and
 * waited for with one poll; without pidfds, it is looked at every 250 us
 * until reaped. At most 1 s. Returns 1 when killed so, 0 when the process
 * is not found (the caller destroys instead). */
static int lv_kill(struct vmm *vmm, const char *name)
{
    int pid = lv_domain_pid(vmm, name);
    if (pid <= 0)
        return 0;
    int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pfd >= 0 && lv_domain_pid(vmm, name) != pid) {
        close(pfd);             /* it ended before it was held */
        return 0;
    }
    if (pfd >= 0) {
        int r = (int)syscall(SYS_pidfd_send_signal, pfd, SIGKILL, NULL, 0);
        if (r == 0) {
            struct pollfd p = { pfd, POLLIN, 0 };
            while (poll(&p, 1, 1000) < 0 && errno == EINTR)
                ;
        }
        close(pfd);
        return r == 0;
    }
    if (kill(pid, SIGKILL) < 0)
        return 0;
    for (int i = 0; i < 4000 && kill(pid, 0) == 0; i++)
        usleep(250);
    return 1;
}

/* An isolated network: no <forward>, no <ip> (so no address of the host,
 * no DHCP server; libvirt also turns IPv6 off on its bridge), spanning tree
 * off so that a port forwards at once. Two processes may make it at once:
 * the loser finds it active. */
static int lv_network_ensure(struct vmm *vmm, const char *name, struct qerr *err)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        virNetworkPtr net = virNetworkLookupByName(vmm->priv, name);
        if (net) {
            int r = virNetworkIsActive(net) == 1 ? 0 : virNetworkCreate(net);
            if (r < 0)
                lv_error(err, "cannot start the network", vmm->uri);
            virNetworkFree(net);
            if (r == 0 || attempt > 0)
                return r < 0 ? -1 : 0;
            continue;
        }
        char xml[512];
        snprintf(xml, sizeof xml,
                 "<network><name>%s</name><bridge name='%s' stp='off' delay='0'/></network>",
                 name, name);
        if ((net = virNetworkCreateXML(vmm->priv, xml))) {
            virNetworkFree(net);
            return 0;
        }
        lv_error(err, "cannot create the network", vmm->uri);
    }
    char dev[64];
    snprintf(dev, sizeof dev, "/sys/class/net/%s", name);
    if (access(dev, F_OK) == 0)
        return qerr_prefix(err, "network %s (a bridge of that name made outside libvirt is in "
                           "the way: `ip link del %s` removes it)", name, name);
    return qerr_prefix(err, "network %s", name);
}

/* ---- block devices of running domains ---- */

/* The running domain's description; *xml NULL when it does not run. */
static int lv_live_xml(struct vmm *vmm, const char *name, char **xml, struct qerr *err)
{
    *xml = NULL;
    virDomainPtr dom = virDomainLookupByName(vmm->priv, name);
    if (!dom) {
        virErrorPtr e = virGetLastError();
        if (e && e->code == VIR_ERR_NO_DOMAIN)
            return 0;
        return lv_error(err, "cannot look up a domain", vmm->uri);
    }
    int rc = 0;
    if (virDomainIsActive(dom) == 1 && !(*xml = virDomainGetXMLDesc(dom, 0)))
        rc = lv_error(err, "cannot read a domain's description", vmm->uri);
    virDomainFree(dom);
    return rc;
}

/* libvirt gives each PCIe device of a q35 domain a root port of its own and
 * adds one spare for hot-plug: a second disk finds none. */
static int lv_hotplug_error(struct qerr *err, const char *what, const char *name,
                            const char *uri)
{
    virErrorPtr e = virGetLastError();
    if (e && e->message && strstr(e->message, "No more available PCI slots"))
        return qerr_set(err, "%s %s: no free PCIe slot is left in the domain for another "
                        "device (libvirt keeps one spare): detach one first", what, name);
    char msg[256];
    snprintf(msg, sizeof msg, "%s %s", what, name);
    return lv_error(err, msg, uri);
}

/* Hot-plugs (attach) or unplugs the device `xml` on the running domain. For
 * QEMU, an unplug waits up to 5 s inside libvirt for the guest to let the
 * device go and returns either way: the caller watches the description. */
static int hotplug(struct vmm *vmm, const char *name, const char *xml, bool attach,
                   struct qerr *err)
{
    virDomainPtr dom = virDomainLookupByName(vmm->priv, name);
    if (!dom)
        return lv_error(err, "cannot look up a domain", vmm->uri);
    int rc = 0;
    if ((attach ? virDomainAttachDeviceFlags : virDomainDetachDeviceFlags)(dom, xml,
                                                                         VIR_DOMAIN_AFFECT_LIVE) < 0)
        rc = lv_hotplug_error(err, attach ? "cannot attach a device to" : "cannot detach a device from",
                              name, vmm->uri);
    virDomainFree(dom);
    return rc;
}

static int lv_attach_device(struct vmm *vmm, const char *name, const char *xml,
                            struct qerr *err)
{
    return hotplug(vmm, name, xml, true, err);
}

static int lv_detach_device(struct vmm *vmm, const char *name, const char *xml,
                            struct qerr *err)
{
    return hotplug(vmm, name, xml, false, err);
}

/* ---- storage pools and volumes ---- */

/* Pool and volume names and a pool's path go into XML: only what our own
 * names are made of. */
static int storage_name_ok(const char *s, bool path)
{
    if (!*s || strlen(s) > 200 || (path && s[0] != '/'))
        return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '-' || *p == '.' || (path && *p == '/')))
            return 0;
    return path || (strcmp(s, ".") != 0 && strcmp(s, "..") != 0);
}

static int lv_pool_ensure(struct vmm *vmm, const char *pool, const char *path, struct qerr *err)
{
    if (!storage_name_ok(pool, false) || !storage_name_ok(path, true))
        return qerr_set(err, "storage pool '%s' at '%s': not a name or an absolute path of "
                        "letters, digits, '_', '-', '.'", pool, path);
    for (int attempt = 0; attempt < 2; attempt++) {
        virStoragePoolPtr p = virStoragePoolLookupByName(vmm->priv, pool);
        if (!p) {
            char xml[1024];
            snprintf(xml, sizeof xml,
                     "<pool type='dir'><name>%s</name><target><path>%s</path>"
                     "<permissions><mode>0711</mode></permissions></target></pool>", pool, path);
            if (!(p = virStoragePoolDefineXML(vmm->priv, xml, 0))) {
                if (attempt == 0)
                    continue;   /* defined meanwhile by another process */
                return lv_error(err, "cannot define the storage pool", vmm->uri);
            }
            if (virStoragePoolBuild(p, 0) < 0) {
                lv_error(err, "cannot build the storage pool", vmm->uri);
                virStoragePoolFree(p);
                return qerr_prefix(err, "pool %s at %s", pool, path);
            }
        }
        int rc = 0;
        if (virStoragePoolIsActive(p) != 1 && virStoragePoolCreate(p, 0) < 0 &&
            virStoragePoolIsActive(p) != 1)
            rc = lv_error(err, "cannot start the storage pool", vmm->uri);
        if (rc == 0)
            virStoragePoolSetAutostart(p, 1);
        virStoragePoolFree(p);
        return rc < 0 ? qerr_prefix(err, "pool %s", pool) : 0;
    }
    return qerr_set(err, "storage pool %s: cannot be defined", pool);
}

/* A sparse upload's reader: data, holes (SEEK_DATA/SEEK_HOLE), skips. */
struct upload {
    int fd;
    unsigned long long sent;
};

static int up_data(virStreamPtr st, char *data, size_t nbytes, void *opaque)
{
    (void)st;
    struct upload *u = opaque;
    ssize_t r = read(u->fd, data, nbytes);
    if (r > 0)
        u->sent += (unsigned long long)r;
    return (int)r;
}

static int up_hole(virStreamPtr st, int *in_data, long long *length, void *opaque)
{
    (void)st;
    struct upload *u = opaque;
    off_t cur = lseek(u->fd, 0, SEEK_CUR), data = lseek(u->fd, cur, SEEK_DATA);
    if (data < 0 && errno == ENXIO) {            /* a hole to the end */
        off_t end = lseek(u->fd, 0, SEEK_END);
        *in_data = 0;
        *length = end - cur;
    } else if (data < 0) {
        return -1;
    } else if (data > cur) {
        *in_data = 0;
        *length = data - cur;
    } else {
        *in_data = 1;
        *length = lseek(u->fd, cur, SEEK_HOLE) - cur;
    }
    return lseek(u->fd, cur, SEEK_SET) == cur ? 0 : -1;
}

static int up_skip(virStreamPtr st, long long length, void *opaque)
{
    (void)st;
    struct upload *u = opaque;
    return lseek(u->fd, (off_t)length, SEEK_CUR) < 0 ? -1 : 0;
}

static int lv_volume_upload(struct vmm *vmm, const char *pool, const char *name, const char *src,
                            unsigned long long size, unsigned long long *sent, struct qerr *err)
{
    *sent = 0;
    if (!storage_name_ok(pool, false) || !storage_name_ok(name, false))
        return qerr_set(err, "volume '%s' in pool '%s': not a name of letters, digits, '_', '-', '.'",
                        name, pool);
    struct upload u = { .fd = -1 };
    if (src) {
        struct stat st;
        if ((u.fd = open(src, O_RDONLY | O_CLOEXEC)) < 0)
            return qerr_errno(err, errno, "cannot read %s", src);
        if (fstat(u.fd, &st) < 0 || !S_ISREG(st.st_mode) || (unsigned long long)st.st_size != size) {
            close(u.fd);
            return qerr_set(err, "%s: not a regular file of %llu bytes", src, size);
        }
    }
    virStoragePoolPtr p = virStoragePoolLookupByName(vmm->priv, pool);
    if (!p) {
        if (u.fd >= 0)
            close(u.fd);
        lv_error(err, "no storage pool", vmm->uri);
        return qerr_prefix(err, "pool %s", pool);
    }
    char xml[512];
    snprintf(xml, sizeof xml,
             "<volume type='file'><name>%s</name><capacity unit='bytes'>%llu</capacity>"
             "<allocation unit='bytes'>0</allocation><target><format type='raw'/></target></volume>",
             name, size);
    virStorageVolPtr v = virStorageVolCreateXML(p, xml, 0);
    int rc = 0;
    if (!v) {
        rc = lv_error(err, "cannot create the volume", vmm->uri);
        qerr_prefix(err, "volume %s in pool %s", name, pool);
    } else if (src && size) {
        virStreamPtr st = virStreamNew(vmm->priv, 0);
        if (!st || virStorageVolUpload(v, st, 0, size, VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM) < 0 ||
            virStreamSparseSendAll(st, up_data, up_hole, up_skip, &u) < 0 || virStreamFinish(st) < 0) {
            rc = lv_error(err, "cannot upload", vmm->uri);
            qerr_prefix(err, "%s to volume %s in pool %s", src, name, pool);
            if (st)
                virStreamAbort(st);
        }
        if (st)
            virStreamFree(st);
        if (rc < 0)
            virStorageVolDelete(v, 0);      /* nothing half-made stays */
    }
    *sent = u.sent;
    if (v)
        virStorageVolFree(v);
    virStoragePoolFree(p);
    if (u.fd >= 0)
        close(u.fd);
    return rc;
}

/* The volume `name` of `pool`: 1 with *pp and *vp (the caller frees both),
 * 0 when the pool or the volume does not exist, -1 with the error. */
static int find_volume(struct vmm *vmm, const char *pool, const char *name, virStoragePoolPtr *pp,
                       virStorageVolPtr *vp, struct qerr *err)
{
    *pp = NULL;
    *vp = NULL;
    if (!storage_name_ok(pool, false) || !storage_name_ok(name, false))
        return qerr_set(err, "volume '%s' in pool '%s': not a name of letters, digits, '_', '-', '.'",
                        name, pool);
    virStoragePoolPtr p = virStoragePoolLookupByName(vmm->priv, pool);
    if (!p) {
        virErrorPtr e = virGetLastError();
        if (e && e->code == VIR_ERR_NO_STORAGE_POOL)
            return 0;
        return lv_error(err, "cannot look up the storage pool", vmm->uri);
    }
    virStorageVolPtr v = virStorageVolLookupByName(p, name);
    if (!v) {
        virErrorPtr e = virGetLastError();
        int rc = !e || e->code != VIR_ERR_NO_STORAGE_VOL
                     ? lv_error(err, "cannot look up the volume", vmm->uri) : 0;
        virStoragePoolFree(p);
        return rc;
    }
    *pp = p;
    *vp = v;
    return 1;
}

static int lv_volume_delete(struct vmm *vmm, const char *pool, const char *name, struct qerr *err)
{
    virStoragePoolPtr p;
    virStorageVolPtr v;
    int rc = find_volume(vmm, pool, name, &p, &v, err);
    if (rc == 1) {
        rc = virStorageVolDelete(v, 0) < 0 ? lv_error(err, "cannot delete the volume", vmm->uri) : 0;
        virStorageVolFree(v);
        virStoragePoolFree(p);
    }
    return rc < 0 ? qerr_prefix(err, "volume %s in pool %s", name, pool) : 0;
}

/* fn on the volume `name` of `pool`: 1 when it returned 0, 0 when there is
 * no such volume, -1 with the error. */
struct volume_call {
    char *out;
    size_t len;
};

static int on_volume(struct vmm *vmm, const char *pool, const char *name,
                     int (*fn)(struct vmm *, virStorageVolPtr, const char *, struct volume_call *,
                               struct qerr *),
                     struct volume_call *c, struct qerr *err)
{
    virStoragePoolPtr p;
    virStorageVolPtr v;
    int rc = find_volume(vmm, pool, name, &p, &v, err);
    if (rc != 1)
        return rc;
    if (fn(vmm, v, name, c, err) < 0)
        rc = -1;
    virStorageVolFree(v);
    virStoragePoolFree(p);
    return rc;
}

static int volume_path_of(struct vmm *vmm, virStorageVolPtr v, const char *name,
                          struct volume_call *c, struct qerr *err)
{
    char *path = virStorageVolGetPath(v);
    int rc = 0;
    if (!path)
        rc = lv_error(err, "cannot get the volume's path", vmm->uri);
    else if ((size_t)snprintf(c->out, c->len, "%s", path) >= c->len)
        rc = qerr_set(err, "the path of volume %s on %s is too long", name, vmm->uri);
    free(path);
    return rc;
}

static int lv_volume_path(struct vmm *vmm, const char *pool, const char *name, char *out,
                          size_t len, struct qerr *err)
{
    struct volume_call c = { out, len };
    return on_volume(vmm, pool, name, volume_path_of, &c, err);
}

/* The volume `name` of the pool `pool`, which must exist; NULL with the
 * error. */
static virStorageVolPtr lookup_volume(struct vmm *vmm, const char *pool, const char *name,
                                      virStoragePoolPtr *pp, struct qerr *err)
{
    virStorageVolPtr v;
    int rc = find_volume(vmm, pool, name, pp, &v, err);
    if (rc == 0)
        qerr_set(err, "no volume %s in pool %s (%s)", name, pool, vmm->uri);
    return rc == 1 ? v : NULL;
}

static int lv_volume_layer(struct vmm *vmm, const char *pool, const char *name, const char *backing,
                           struct qerr *err)
{
    virStoragePoolPtr p;
    virStorageVolPtr b = lookup_volume(vmm, pool, backing, &p, err);
    if (!b)
        return -1;
    if (!storage_name_ok(name, false)) {
        virStorageVolFree(b);
        virStoragePoolFree(p);
        return qerr_set(err, "volume '%s': not a name of letters, digits, '_', '-', '.'", name);
    }
    virStorageVolInfo info;
    char *path = virStorageVolGetPath(b);
    int rc = 0;
    if (!path || virStorageVolGetInfo(b, &info) < 0) {
        rc = lv_error(err, "cannot read the backing volume", vmm->uri);
    } else {
        char xml[PATH_MAX + 512];
        snprintf(xml, sizeof xml,
                 "<volume type='file'><name>%s</name><capacity unit='bytes'>%llu</capacity>"
                 "<target><format type='qcow2'/></target><backingStore><path>%s</path>"
                 "<format type='raw'/></backingStore></volume>",
                 name, info.capacity, path);
        virStorageVolPtr v = virStorageVolCreateXML(p, xml, 0);
        if (!v)
            rc = lv_error(err, "cannot create the layer", vmm->uri);
        else
            virStorageVolFree(v);
    }
    if (rc < 0)
        qerr_prefix(err, "volume %s over %s in pool %s", name, backing, pool);
    free(path);
    virStorageVolFree(b);
    virStoragePoolFree(p);
    return rc;
}

/* A volume's size as its file has it now: the pool knows the size it had
 * when it last looked (a savefile the daemon wrote by path grew since);
 * asking for the volume's info looks again. */
static void volume_refresh(virStorageVolPtr v)
{
    virStorageVolInfo info;
    virStorageVolGetInfo(v, &info);
}

/* Whether the pool knows `v` as of the format `fmt`. */
static int volume_format_is(virStorageVolPtr v, const char *fmt, char *seen, size_t len)
{
    char *xml = virStorageVolGetXMLDesc(v, 0);
    char want[64];
    snprintf(seen, len, "unknown");
    if (!xml)
        return 0;
    const char *t = strstr(xml, "<target>");
    const char *f = t ? strstr(t, "<format type='") : NULL;
    if (f) {
        f += strlen("<format type='");
        size_t n = strcspn(f, "'");
        snprintf(seen, len, "%.*s", (int)(n < len ? n : len - 1), f);
    }
    snprintf(want, sizeof want, "%s", fmt);
    free(xml);
    return strcmp(seen, want) == 0;
}

static int lv_volume_clone(struct vmm *vmm, const char *pool, const char *name, const char *from,
                           const char *from_fmt, struct qerr *err)
{
    virStoragePoolPtr p;
    virStorageVolPtr f = lookup_volume(vmm, pool, from, &p, err);
    if (!f)
        return -1;
    int rc = 0;
    char seen[32];
    volume_refresh(f);
    if (!volume_format_is(f, from_fmt, seen, sizeof seen)) {
        rc = qerr_set(err, "volume %s in pool %s is %s to %s, not %s: not copied", from, pool,
                      seen, vmm->uri, from_fmt);
    } else if (!storage_name_ok(name, false)) {
        rc = qerr_set(err, "volume '%s': not a name of letters, digits, '_', '-', '.'", name);
    } else {
        char xml[512];
        snprintf(xml, sizeof xml,
                 "<volume type='file'><name>%s</name><capacity unit='bytes'>0</capacity>"
                 "<target><format type='raw'/></target></volume>", name);
        virStorageVolPtr v = virStorageVolCreateXMLFrom(p, xml, f, 0);
        if (!v) {
            rc = lv_error(err, "cannot copy the volume", vmm->uri);
            qerr_prefix(err, "volume %s from %s in pool %s", name, from, pool);
        } else {
            virStorageVolFree(v);
        }
    }
    virStorageVolFree(f);
    virStoragePoolFree(p);
    return rc;
}

/* `len` bytes between `buf` and the volume at `offset`, by a stream: read
 * (download; *done counts, fewer at its end) or written over it in place
 * (upload). */
static int volume_stream(struct vmm *vmm, const char *pool, const char *name, bool write,
                         unsigned long long offset, char *buf, size_t len, size_t *done,
                         struct qerr *err)
{
    const char *what = write ? "cannot upload" : "cannot download";
    *done = 0;
    virStoragePoolPtr p;
    virStorageVolPtr v = lookup_volume(vmm, pool, name, &p, err);
    if (!v)
        return -1;
    if (!write)
        volume_refresh(v);
    virStreamPtr st = virStreamNew(vmm->priv, 0);
    int rc = 0;
    if (!st || (write ? virStorageVolUpload(v, st, offset, len, 0)
                      : virStorageVolDownload(v, st, offset, len, 0)) < 0) {
        rc = lv_error(err, what, vmm->uri);
    } else {
        while (rc == 0 && *done < len) {
            int r = write ? virStreamSend(st, buf + *done, len - *done)
                          : virStreamRecv(st, buf + *done, len - *done);
            if (r < 0)
                rc = lv_error(err, what, vmm->uri);
            else if (r == 0)
                break;
            else
                *done += (size_t)r;
        }
        if (rc == 0 && virStreamFinish(st) < 0)
            rc = lv_error(err, what, vmm->uri);
        else if (rc < 0)
            virStreamAbort(st);
    }
    if (st)
        virStreamFree(st);
    virStorageVolFree(v);
    virStoragePoolFree(p);
    return rc < 0 ? qerr_prefix(err, "volume %s in pool %s", name, pool) : 0;
}

static int lv_volume_read(struct vmm *vmm, const char *pool, const char *name,
                          unsigned long long offset, void *buf, size_t len, size_t *got,
                          struct qerr *err)
{
    return volume_stream(vmm, pool, name, false, offset, buf, len, got, err);
}

static int lv_volume_write(struct vmm *vmm, const char *pool, const char *name,
                           unsigned long long offset, const void *buf, size_t len,
                           struct qerr *err)
{
    size_t sent;
    if (volume_stream(vmm, pool, name, true, offset, (char *)buf, len, &sent, err) < 0)
        return -1;
    return sent == len ? 0 : qerr_set(err, "volume %s in pool %s: %zu of %zu bytes written",
                                      name, pool, sent, len);
}

/* The text of the first element <tag ...>TEXT</tag> of `xml`, digits and
 * dots only, or "-". */
static void xml_number(const char *xml, const char *tag, char *out, size_t len)
{
    char open[32];
    snprintf(open, sizeof open, "<%s", tag);
    const char *p = strstr(xml, open);
    p = p ? strchr(p, '>') : NULL;
    size_t n = p ? strspn(p + 1, "0123456789.") : 0;
    snprintf(out, len, "%.*s", n ? (int)n : 1, n ? p + 1 : "-");
}

static int volume_stamp_of(struct vmm *vmm, virStorageVolPtr v, const char *name,
                           struct volume_call *c, struct qerr *err)
{
    (void)name;
    volume_refresh(v);
    char *xml = virStorageVolGetXMLDesc(v, 0);
    if (!xml)
        return lv_error(err, "cannot read the volume", vmm->uri);
    /* Not its change time (a domain's start relabels its files), nor its
     * allocation (which the file system settles after a write). */
    char f[2][32];
    const char *tags[] = { "capacity", "mtime" };
    for (int i = 0; i < 2; i++)
        xml_number(xml, tags[i], f[i], sizeof f[i]);
    snprintf(c->out, c->len, "%s %s", f[0], f[1]);
    free(xml);
    return 0;
}

static int lv_volume_stamp(struct vmm *vmm, const char *pool, const char *name, char *out,
                           size_t len, struct qerr *err)
{
    struct volume_call c = { out, len };
    return on_volume(vmm, pool, name, volume_stamp_of, &c, err);
}

static int lv_volume_names(struct vmm *vmm, const char *pool, char ***names, size_t *n,
                           struct qerr *err)
{
    virStoragePoolPtr p = virStoragePoolLookupByName(vmm->priv, pool);
    if (!p) {
        virErrorPtr e = virGetLastError();
        return e && e->code == VIR_ERR_NO_STORAGE_POOL
                   ? 0 : lv_error(err, "cannot look up the storage pool", vmm->uri);
    }
    virStorageVolPtr *vols = NULL;
    int count = virStoragePoolListAllVolumes(p, &vols, 0);
    int rc = 0;
    if (count < 0) {
        rc = lv_error(err, "cannot list the volumes", vmm->uri);
        qerr_prefix(err, "pool %s", pool);
    } else if (count > 0 && !(*names = calloc((size_t)count, sizeof **names))) {
        rc = qerr_errno(err, ENOMEM, "the volumes of pool %s", pool);
    }
    for (int i = 0; i < (count > 0 ? count : 0); i++) {
        const char *name = virStorageVolGetName(vols[i]);
        if (rc == 0 && name && ((*names)[*n] = strdup(name)))
            (*n)++;
        virStorageVolFree(vols[i]);
    }
    free(vols);
    virStoragePoolFree(p);
    return rc;
}

/* ---- a guest channel served here ----
 * One event loop (libvirt's default one, registered before the connection
 * so that keepalives run): the listening socket, the one local connection
 * and its channel stream (non-blocking), and a timer asking whether the
 * domain still runs. What the local side sends and the stream cannot take
 * yet waits in `up`, and the local side is not read meanwhile. Endings
 * seen in a callback are carried out after it (`closing`). */
struct relay {
    virConnectPtr conn;
    virDomainPtr dom;
    const char *channel;
    int fd, fd_watch;
    virStreamPtr st;
    char up[65536];
    size_t up_len;
    bool closing, quit;
    int rc;
    char why[256];
};

static void relay_end_session(struct relay *r)
{
    if (r->fd_watch >= 0)
        virEventRemoveHandle(r->fd_watch);
    r->fd_watch = -1;
    if (r->st) {
        virStreamEventRemoveCallback(r->st);
        virStreamAbort(r->st);
        virStreamFree(r->st);
        r->st = NULL;
    }
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
    r->up_len = 0;
    r->closing = false;
}

static void relay_update(struct relay *r)
{
    if (!r->st || r->closing)
        return;
    virEventUpdateHandle(r->fd_watch, r->up_len ? 0 : VIR_EVENT_HANDLE_READABLE);
    virStreamEventUpdateCallback(r->st, VIR_STREAM_EVENT_READABLE | VIR_STREAM_EVENT_ERROR |
                                        VIR_STREAM_EVENT_HANGUP |
                                        (r->up_len ? VIR_STREAM_EVENT_WRITABLE : 0));
}

static void relay_flush(struct relay *r)
{
    while (r->up_len && !r->closing) {
        int n = virStreamSend(r->st, r->up, r->up_len);
        if (n == -2)
            break;
        if (n <= 0) {
            r->closing = true;
            return;
        }
        memmove(r->up, r->up + n, r->up_len - (size_t)n);
        r->up_len -= (size_t)n;
    }
    relay_update(r);
}

static void relay_on_stream(virStreamPtr st, int events, void *opaque)
{
    struct relay *r = opaque;
    if (r->closing || st != r->st)
        return;
    if (events & VIR_STREAM_EVENT_READABLE) {
        char buf[65536];
        for (;;) {
            int n = virStreamRecv(st, buf, sizeof buf);
            if (n == -2)
                break;
            if (n <= 0) {
                r->closing = true;
                return;
            }
            for (int off = 0; off < n;) {
                ssize_t w = write(r->fd, buf + off, (size_t)(n - off));
                if (w < 0 && errno == EINTR)
                    continue;
                if (w <= 0) {
                    r->closing = true;
                    return;
                }
                off += (int)w;
            }
        }
    }
    if (events & (VIR_STREAM_EVENT_ERROR | VIR_STREAM_EVENT_HANGUP)) {
        r->closing = true;
        return;
    }
    if (events & VIR_STREAM_EVENT_WRITABLE)
        relay_flush(r);
}

static void relay_on_local(int watch, int fd, int events, void *opaque)
{
    (void)watch;
    struct relay *r = opaque;
    if (r->closing || fd != r->fd)
        return;
    if ((events & VIR_EVENT_HANDLE_READABLE) && r->up_len == 0) {
        ssize_t n = read(fd, r->up, sizeof r->up);
        if (n < 0 && errno == EINTR)
            return;
        if (n <= 0) {
            r->closing = true;
            return;
        }
        r->up_len = (size_t)n;
        relay_flush(r);
        return;
    }
    if (events & (VIR_EVENT_HANDLE_ERROR | VIR_EVENT_HANDLE_HANGUP))
        r->closing = true;
}

static void relay_on_listen(int watch, int fd, int events, void *opaque)
{
    (void)watch, (void)events;
    struct relay *r = opaque;
    int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0)
        return;
    relay_end_session(r);           /* the newer connection takes the channel */
    virStreamPtr st = virStreamNew(r->conn, VIR_STREAM_NONBLOCK);
    if (!st || virDomainOpenChannel(r->dom, r->channel, st, VIR_DOMAIN_CHANNEL_FORCE) < 0 ||
        virStreamEventAddCallback(st, VIR_STREAM_EVENT_READABLE | VIR_STREAM_EVENT_ERROR |
                                          VIR_STREAM_EVENT_HANGUP,
                                  relay_on_stream, r, NULL) < 0) {
        virErrorPtr e = virGetLastError();
        fprintf(stderr, "channel %s: %s\n", r->channel, e && e->message ? e->message : "?");
        if (st) {
            virStreamAbort(st);
            virStreamFree(st);
        }
        close(c);
        return;
    }
    r->st = st;
    r->fd = c;
    r->fd_watch = virEventAddHandle(c, VIR_EVENT_HANDLE_READABLE, relay_on_local, r, NULL);
    if (r->fd_watch < 0)
        r->closing = true;
}

static void relay_on_timer(int timer, void *opaque)
{
    (void)timer;
    struct relay *r = opaque;
    if (virConnectIsAlive(r->conn) != 1) {
        snprintf(r->why, sizeof r->why, "the connection to the hypervisor is gone");
        r->rc = -1;
        r->quit = true;
    } else if (virDomainIsActive(r->dom) != 1) {
        r->quit = true;             /* the domain stopped: done */
    }
}

static int lv_channel_relay(struct vmm *vmm, const char *name, const char *channel, int listen_fd,
                            struct qerr *err)
{
    if (virEventRegisterDefaultImpl() < 0)
        return lv_error(err, "cannot set up an event loop", vmm->uri);
    if (lv_connect(vmm, err) < 0)
        return -1;
    struct relay r = { .conn = vmm->priv, .channel = channel, .fd = -1, .fd_watch = -1 };
    /* A host that stops answering ends the relay within 15 s. */
    virConnectSetKeepAlive(r.conn, 5, 3);
    int lw = -1, timer = -1, rc = 0;
    if (!(r.dom = virDomainLookupByName(r.conn, name))) {
        rc = lv_error(err, "no such domain", vmm->uri);
        qerr_prefix(err, "%s", name);
        goto out;
    }
    lw = virEventAddHandle(listen_fd, VIR_EVENT_HANDLE_READABLE, relay_on_listen, &r, NULL);
    timer = virEventAddTimeout(500, relay_on_timer, &r, NULL);
    if (lw < 0 || timer < 0) {
        rc = qerr_set(err, "cannot watch the relay's socket");
        goto out;
    }
    while (!r.quit) {
        if (virEventRunDefaultImpl() < 0) {
            rc = lv_error(err, "the event loop failed", vmm->uri);
            break;
        }
        if (r.closing)
            relay_end_session(&r);
    }
    if (r.quit && r.rc < 0)
        rc = qerr_set(err, "%s (%s)", r.why, vmm->uri);
out:
    relay_end_session(&r);
    if (lw >= 0)
        virEventRemoveHandle(lw);
    if (timer >= 0)
        virEventRemoveTimeout(timer);
    if (r.dom)
        virDomainFree(r.dom);
    lv_disconnect(vmm);
    return rc;
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
    .shares_memory = lv_shares_memory,
    .save_device_state = lv_save_device_state,
    .restore_device_state = lv_restore_device_state,
    .domain_pid = lv_domain_pid,
    .kill = lv_kill,
    .network_ensure = lv_network_ensure,
    .live_xml = lv_live_xml,
    .attach_device = lv_attach_device,
    .detach_device = lv_detach_device,
    .pool_ensure = lv_pool_ensure,
    .volume_upload = lv_volume_upload,
    .volume_delete = lv_volume_delete,
    .volume_path = lv_volume_path,
    .volume_layer = lv_volume_layer,
    .volume_clone = lv_volume_clone,
    .volume_read = lv_volume_read,
    .volume_write = lv_volume_write,
    .volume_names = lv_volume_names,
    .volume_stamp = lv_volume_stamp,
    .channel_relay = lv_channel_relay,
};
