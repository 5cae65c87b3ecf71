#include "lifecycle.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../storage/storage.h"
#include "../templates/templates.h"
#include "agent_client.h"
#include "domain.h"
#include "hosts.h"
#include "monitor.h"
#include "net.h"
#include "pyliteral.h"
#include "runtime.h"
#include "util.h"
#include "vmguard.h"

#define DEFAULT_KERNELOPTS "nopat"
/* x86 Linux takes at most 2048 bytes of command line, its NUL included. */
#define KERNEL_CMDLINE_MAX 2047

/* ---- the transition table ---- */

static const char *const not_running = "VM not running";
static const char *const already_stopped = "VM already stopped!";

/* NULL: allowed; else the refusal. Rows: operations; columns: states. */
static const char *const transitions[QOP_COUNT][QVM_POWER_NA + 1] = {
    [QOP_START] = {
        [QVM_POWER_HALTED] = NULL, [QVM_POWER_CRASHED] = NULL,
        [QVM_POWER_RUNNING] = "VM is already running!",
        [QVM_POWER_TRANSIENT] = "VM is already running!",
        [QVM_POWER_PAUSED] = "VM is already running! (paused)",
        [QVM_POWER_SUSPENDED] = "VM is already running! (suspended)",
        [QVM_POWER_HALTING] = "VM is shutting down: wait until it is halted",
        [QVM_POWER_DYING] = "VM is shutting down: wait until it is halted",
        [QVM_POWER_NA] = "VM state unknown",
    },
    [QOP_SHUTDOWN] = {
        [QVM_POWER_HALTED] = already_stopped, [QVM_POWER_CRASHED] = already_stopped,
        [QVM_POWER_RUNNING] = NULL, [QVM_POWER_TRANSIENT] = NULL,
        [QVM_POWER_PAUSED] = "VM is paused: unpause it first, or kill it",
        [QVM_POWER_SUSPENDED] = "VM is suspended: kill it",
        [QVM_POWER_HALTING] = NULL, [QVM_POWER_DYING] = NULL,
        [QVM_POWER_NA] = "VM state unknown",
    },
    [QOP_KILL] = {
        [QVM_POWER_HALTED] = already_stopped,
        [QVM_POWER_RUNNING] = NULL, [QVM_POWER_TRANSIENT] = NULL, [QVM_POWER_PAUSED] = NULL,
        [QVM_POWER_SUSPENDED] = NULL, [QVM_POWER_HALTING] = NULL, [QVM_POWER_DYING] = NULL,
        [QVM_POWER_CRASHED] = NULL, [QVM_POWER_NA] = NULL,
    },
    [QOP_PAUSE] = {
        [QVM_POWER_HALTED] = not_running, [QVM_POWER_CRASHED] = not_running,
        [QVM_POWER_RUNNING] = NULL, [QVM_POWER_TRANSIENT] = NULL,
        [QVM_POWER_PAUSED] = "VM already paused",
        [QVM_POWER_SUSPENDED] = "VM is suspended", [QVM_POWER_HALTING] = "VM is shutting down",
        [QVM_POWER_DYING] = "VM is shutting down", [QVM_POWER_NA] = "VM state unknown",
    },
    [QOP_UNPAUSE] = {
        [QVM_POWER_HALTED] = not_running, [QVM_POWER_CRASHED] = not_running,
        [QVM_POWER_RUNNING] = "VM not paused", [QVM_POWER_TRANSIENT] = "VM not paused",
        [QVM_POWER_PAUSED] = NULL, [QVM_POWER_SUSPENDED] = "VM is suspended, not paused",
        [QVM_POWER_HALTING] = "VM not paused", [QVM_POWER_DYING] = "VM not paused",
        [QVM_POWER_NA] = "VM state unknown",
    },
    [QOP_RUN] = {
        [QVM_POWER_HALTED] = NULL, [QVM_POWER_CRASHED] = NULL,
        [QVM_POWER_RUNNING] = NULL, [QVM_POWER_TRANSIENT] = NULL,
        [QVM_POWER_PAUSED] = "VM is paused: unpause it first",
        [QVM_POWER_SUSPENDED] = "VM is suspended", [QVM_POWER_HALTING] = "VM is shutting down",
        [QVM_POWER_DYING] = "VM is shutting down", [QVM_POWER_NA] = "VM state unknown",
    },
};

int qvm_op_allowed(enum qvm_op op, enum qvm_power st, struct qerr *err)
{
    const char *refusal = transitions[op][st];
    return refusal ? qerr_set(err, "%s", refusal) : 0;
}

/* ---- the template exclusion ---- */

/* The VMs whose state decides a start of `vm`: its children when it is a
 * template, else its template (none when it has none). malloc'ed. */
static struct qvm **exclusion_peers(const struct qvm_collection *c, const struct qvm *vm,
                                    size_t *n)
{
    if (qvm_class_is_template(vm->cls))
        return qvm_collection_children(c, vm, n);
    struct qvm **tpl = calloc(1, sizeof *tpl);
    *n = 0;
    if (tpl && vm->template_qid >= 0 && (tpl[0] = qvm_collection_by_qid(c, vm->template_qid)))
        *n = 1;
    return tpl;
}

int qubes_template_exclusion(struct qubes *q, const struct qvm *vm, struct qerr *err)
{
    size_t n;
    cleanup_free struct qvm **peers = exclusion_peers(q->coll, vm, &n);
    cleanup_free bool *running = calloc(n + 1, sizeof *running);
    if (!peers || !running)
        return qerr_errno(err, ENOMEM, "checking the template of '%s'", vm->name);
    for (size_t i = 0; i < n; i++) {
        enum qvm_power st;
        char owner[PATH_MAX];
        if (qubes_vm_state(q, peers[i], &st, err) < 0)
            return -1;
        /* A DispVM being made has its record before its domain: it counts
         * while the worker that owns it lives. */
        running[i] = qvm_power_is_running(st) ||
                     (peers[i]->cls == QVM_DISP &&
                      qrt_vm_path(&q->cfg, peers[i]->name, QRT_OWNER, owner, sizeof owner,
                                  NULL) == 0 &&
                      qrt_owner_alive(owner));
    }
    return template_check_start(vm, peers, running, n, err);
}

/* ---- starting ---- */

/* The child's root: a fresh copy-on-write layer over its template's
 * root.img (read-only backing file), made at every start. Debug mode keeps
 * the layer unless the template's root is newer. */
static int prepare_overlay(const struct qvm *vm, bool debug, const char *tpl_root,
                           const char *overlay, struct qerr *err)
{
    struct stat ov, base;
    if (stat(tpl_root, &base) < 0)
        return qerr_errno(err, errno, "template root image %s", tpl_root);
    if ((debug || qvm_get_bool(vm, "debug", false)) && stat(overlay, &ov) == 0 &&
        ov.st_mtime >= base.st_mtime)
        return 0;
    if (unlink(overlay) < 0 && errno != ENOENT)
        return qerr_errno(err, errno, "cannot remove %s", overlay);
    return storage_create_layer(tpl_root, "raw", overlay, err);
}

static int file_exists(const char *path)
{
    return access(path, R_OK) == 0;
}

/* Its services (qvm-service) for the guest's init: "qubes.services=a,!b".
 * The kernel command line rather than the agent: the guest has them from
 * its first instruction, before any of its services starts, and nothing
 * waits for the agent. A key that is no service name (an old file's) stays
 * behind, said so: the VM decides about it. */
static int services_arg(const struct qvm *vm, FILE *progress, char out[QSERVICES_ARG_MAX + 1],
                        struct qerr *err)
{
    const char *text = qvm_get_attr(vm, "services");
    struct pydict d;
    struct qerr why;
    out[0] = '\0';
    if (!text)
        return 0;
    if (pydict_parse(text, &d, err) < 0)
        return qerr_prefix(err, "services of '%s'", vm->name);
    for (size_t i = 0; i < d.n; i++)
        if (qservice_check_name(d.items[i].key, &why) < 0)
            qsay(progress, "--> Not telling '%s' of a service: %s", vm->name, why.msg);
    int rc = qservices_cmdline(&d, out, err);
    pydict_free(&d);
    return rc < 0 ? qerr_prefix(err, "cannot start '%s'", vm->name) : 0;
}

/* Services reach a guest on the kernel command line we give it: one that
 * boots from its own disk does not learn of them, and its start says so. */
static void no_kernel_services(const struct qvm *vm, const char *services, FILE *progress)
{
    const char *list = strchr(services, '=');
    if (list)
        qsay(progress, "warning: '%s' boots from its disk, without a kernel of ours: its "
             "services (%s) do not reach it", vm->name, list + 1);
}

/* The domain's identity and size from the record. A VM gets its memory,
 * no more: ballooning up to maxmem needs a memory balancer that grows a
 * guest on demand (the original's qmemman), which this host has not.
 * Booted at maxmem with the balloon holding all but `memory`, a small guest
 * (a NetVM's 200 MiB against maxmem 4000) spends its memory on the page
 * tables of the rest and panics. */
static void spec_resources(const struct qvm *vm, struct domain_spec *s)
{
    s->uuid = qvm_get_attr(vm, "uuid");
    s->memory_mib = qvm_get_int(vm, "memory", qvm_class_is_hvm(vm->cls) ? 512 : 400);
    s->maxmem_mib = s->memory_mib;
    s->vcpus = qvm_get_int(vm, "vcpus", 2);
}

/* The kernel command line of a direct boot: the VM's name, its network,
 * its services and kernelopts. */
static int kernel_cmdline(const struct qvm *vm, const struct qnet *net,
                          const struct qnet_serving *serve, const char *services, char *out,
                          size_t len, struct qerr *err)
{
    char netopts[256];
    const char *opts = qvm_get_bool(vm, "uses_default_kernelopts", true)
                           ? DEFAULT_KERNELOPTS : qvm_get_attr(vm, "kernelopts");
    if (!opts)
        opts = "";
    qnet_cmdline(net, serve, netopts, sizeof netopts);
    int n = snprintf(out, len, "console=ttyS0 root=/dev/vda rw quiet qubes.name=%s%s%s%s%s%s%s",
                     vm->name, *netopts ? " " : "", netopts, *services ? " " : "", services,
                     *opts ? " " : "", opts);
    if (n < 0 || n > KERNEL_CMDLINE_MAX || (size_t)n >= len)
        return qerr_set(err, "cannot start '%s': its kernel command line would be longer "
                        "than the kernel's %d bytes (kernelopts, services)", vm->name,
                        KERNEL_CMDLINE_MAX);
    return 0;
}

int qubes_channel_relay_spawn(const char *name, struct qerr *err)
{
    char prog[PATH_MAX];
    char *argv[] = { prog, (char *)name, NULL };
    if (qsibling_program("qubes-channel-relay", "QUBES_CHANNEL_RELAY", prog, sizeof prog, err) < 0 ||
        qrun_program(argv, err) < 0)
        return qerr_prefix(err, "cannot serve the agent channel of '%s' here", name);
    return 0;
}

/* A template here and a VM based on it on another host: the template's
 * root image and kernel are kept there as volumes T.root.img, T.vmlinuz,
 * T.initramfs (the names its own would have; it has none there), sent again
 * when its files changed since the last time (their sizes, times and
 * inodes, recorded in T's directory as replicas/HOST.stamp). Called under
 * the start lock while the template does not run; and a copy is never
 * stale while a VM based on T runs there, since T cannot have run since
 * that VM started: no running VM's backing file is replaced. */
static int template_replica(struct qubes *q, const struct qvm *tpl, const char *host,
                            struct vmm *vmm, FILE *progress, struct qerr *err)
{
    static const char *const kinds[] = { "root.img", "vmlinuz", "initramfs" };
    char dir[PATH_MAX], files[3][PATH_MAX + 32], stamp[1024] = "", old[1024] = "";
    char sdir[PATH_MAX + 16], spath[PATH_MAX + 64], there[PATH_MAX];
    if (qubes_vm_dir(q, tpl, dir, sizeof dir, err) < 0 ||
        qubes_vm_image(q, tpl, "root_img", "root.img", files[0], sizeof files[0], err) < 0)
        return -1;
    snprintf(files[1], sizeof files[1], "%s/kernel/vmlinuz", dir);
    snprintf(files[2], sizeof files[2], "%s/kernel/initramfs", dir);
    size_t used = 0;
    for (size_t i = 0; i < 3; i++) {
        struct stat st;
        if (stat(files[i], &st) < 0) {
            if (i == 0)
                return qerr_errno(err, errno, "the root image of '%s'", tpl->name);
            files[i][0] = '\0';
            continue;
        }
        used += (size_t)snprintf(stamp + used, sizeof stamp - used, "%s %lld %lld.%09ld %llu %llu\n",
                                 kinds[i], (long long)st.st_size, (long long)st.st_mtim.tv_sec,
                                 st.st_mtim.tv_nsec, (unsigned long long)st.st_dev,
                                 (unsigned long long)st.st_ino);
    }
    snprintf(sdir, sizeof sdir, "%s/replicas", dir);
    snprintf(spath, sizeof spath, "%s/%s.stamp", sdir, host);
    int rc = qhost_volume_path(vmm, tpl->name, "root.img", there, sizeof there, err);
    if (rc < 0)
        return -1;
    if (rc == 1 && qread_small(spath, old, sizeof old) == 0 && strcmp(old, stamp) == 0)
        return 0;
    qsay(progress, "--> Sending the root image and kernel of %s to host %s", tpl->name, host);
    unlink(spath);      /* what is there is no longer known to be current */
    for (size_t i = 0; i < 3; i++) {
        char vol[QHOST_VOLUME_NAME_MAX];
        unsigned long long sent;
        struct stat st;
        if (qhost_volume_name(tpl->name, kinds[i], vol, sizeof vol, err) < 0 ||
            qhost_volume_delete(vmm, tpl->name, kinds[i], err) < 0)
            return -1;
        if (files[i][0] && (stat(files[i], &st) < 0 ||
                            vmm_volume_upload(vmm, QHOST_POOL, vol, files[i],
                                              (unsigned long long)st.st_size, &sent, err) < 0))
            return qerr_prefix(err, "the copy of %s's %s on host %s", tpl->name, kinds[i], host);
    }
    if (qmkdirs(sdir, err) < 0 || qwrite_file_atomic(spath, stamp, strlen(stamp), 0640, err) < 0)
        return -1;
    return 0;
}

/* A VM on another host (hosts.h): its images are volumes there, named by
 * their paths on that host; a VM based on a template (there too) boots
 * from a copy-on-write layer over the template's root, a volume made anew
 * there at each start; its agent's channel is where that host puts
 * channels, served here by qubes-channel-relay; no network yet (networks
 * are this host's), no console log. */
static int build_remote_spec_and_start(struct qubes *q, struct qvm *vm, struct vmm *vmm,
                                       FILE *progress, struct qerr *err)
{
    char root[PATH_MAX], priv[PATH_MAX], kernel[PATH_MAX], initrd[PATH_MAX];
    char rdir[PATH_MAX], cmdline[KERNEL_CMDLINE_MAX + 2], services[QSERVICES_ARG_MAX + 1];
    struct domain_spec s = { .name = vm->name, .type = domain_type() };
    struct qnet net = { 0 };
    struct qnet_serving serve = { 0 };
    const struct qvm *tpl =
        vm->template_qid >= 0 ? qvm_collection_by_qid(q->coll, vm->template_qid) : NULL;
    const char *host = qvm_host(vm);
    if (tpl && qvm_host(tpl) && strcmp(qvm_host(tpl), host) != 0)
        return qerr_set(err, "'%s' lives on host '%s' and its template '%s' on host '%s'",
                        vm->name, host, tpl->name, qvm_host(tpl));
    if (tpl && !qvm_host(tpl) && template_replica(q, tpl, host, vmm, progress, err) < 0)
        return qerr_prefix(err, "cannot start '%s' on host '%s'", vm->name, host);
    if (tpl) {
        char layer[QHOST_VOLUME_NAME_MAX], base[QHOST_VOLUME_NAME_MAX];
        if (qhost_volume_name(vm->name, "volatile.img", layer, sizeof layer, err) < 0 ||
            qhost_volume_name(tpl->name, "root.img", base, sizeof base, err) < 0 ||
            qhost_volume_delete(vmm, vm->name, "volatile.img", err) < 0 ||
            vmm_volume_layer(vmm, QHOST_POOL, layer, base, err) < 0 ||
            qhost_volume_path(vmm, vm->name, "volatile.img", root, sizeof root, err) <= 0)
            return qerr_prefix(err, "cannot make the root layer of '%s' on host '%s'", vm->name,
                               host);
    } else {
        int rc = qhost_volume_path(vmm, vm->name, "root.img", root, sizeof root, err);
        if (rc <= 0)
            return rc < 0 ? -1 : qerr_set(err, "'%s' has no root.img on host '%s' (volume %s.root.img "
                                          "of pool %s)", vm->name, host, vm->name, QHOST_POOL);
    }
    int rc = qhost_volume_path(vmm, vm->name, "private.img", priv, sizeof priv, err);
    if (rc <= 0)
        return rc < 0 ? -1 : qerr_set(err, "'%s' has no private.img on host '%s' (volume "
                                      "%s.private.img of pool %s)", vm->name, host, vm->name,
                                      QHOST_POOL);
    /* Its own kernel first, else its template's. */
    const char *kowner = vm->name;
    if ((rc = qhost_volume_path(vmm, kowner, "vmlinuz", kernel, sizeof kernel, err)) == 0 && tpl)
        rc = qhost_volume_path(vmm, kowner = tpl->name, "vmlinuz", kernel, sizeof kernel, err);
    if (rc < 0 || qhost_volume_path(vmm, kowner, "initramfs", initrd, sizeof initrd, err) < 0)
        return -1;
    s.disks[s.ndisks++] = (struct domain_disk){ .path = root, .format = tpl ? "qcow2" : "raw" };
    s.disks[s.ndisks++] = (struct domain_disk){ .path = priv, .format = "raw" };
    if (kernel[0]) {
        if (services_arg(vm, progress, services, err) < 0 ||
            kernel_cmdline(vm, &net, &serve, services, cmdline, sizeof cmdline, err) < 0)
            return -1;
        s.kernel = kernel;
        s.initrd = initrd[0] ? initrd : NULL;
        s.cmdline = cmdline;
    } else if (services_arg(vm, progress, services, err) < 0) {
        return -1;
    } else {
        no_kernel_services(vm, services, progress);
    }
    if (qrt_vm_path(&q->cfg, vm->name, NULL, rdir, sizeof rdir, err) < 0 ||
        qmkdirs(rdir, err) < 0)
        return -1;
    qvm_power_clear_ready(&q->cfg, vm->name);
    s.agent_socket_auto = true;
    spec_resources(vm, &s);
    qsay(progress, "--> Starting domain %s on host %s (%s, %ld MiB, %ld vCPU)", vm->name,
         qvm_host(vm), s.type, s.memory_mib, s.vcpus);
    if (vmm_create_spec(vmm, &s, err) < 0)
        return -1;
    if (qubes_channel_relay_spawn(vm->name, err) < 0) {
        struct qerr e;
        vmm_destroy(vmm, vm->name, &e);
        return -1;
    }
    return 0;
}

static int build_spec_and_start(struct qubes *q, struct qvm *vm, FILE *progress,
                                const char *mem_file, bool debug, struct qerr *err)
{
    char dir[PATH_MAX], root[PATH_MAX], priv[PATH_MAX], overlay[PATH_MAX];
    char kdir[PATH_MAX], kernel[PATH_MAX + 16], initrd[PATH_MAX + 16], log[PATH_MAX + 16];
    char sock[PATH_MAX], rdir[PATH_MAX], cmdline[KERNEL_CMDLINE_MAX + 2];
    char services[QSERVICES_ARG_MAX + 1], backing_label[32];
    struct qvm *tpl = vm->template_qid >= 0 ? qvm_collection_by_qid(q->coll, vm->template_qid) : NULL;
    struct domain_spec s = { .name = vm->name, .type = domain_type() };
    struct qnet net;
    struct qnet_serving serve;

    if (qnet_of_vm(q->coll, vm, &net, err) < 0 || services_arg(vm, progress, services, err) < 0)
        return -1;
    qnet_serving_of_vm(vm, &serve);
    if (qubes_vm_dir(q, vm, dir, sizeof dir, err) < 0 ||
        qubes_vm_image(q, vm, "private_img", "private.img", priv, sizeof priv, err) < 0)
        return -1;
    if (tpl) {
        if (qubes_vm_image(q, tpl, "root_img", "root.img", root, sizeof root, err) < 0 ||
            qubes_vm_image(q, vm, "volatile_img", "volatile.img", overlay, sizeof overlay, err) < 0 ||
            prepare_overlay(vm, debug, root, overlay, err) < 0 ||
            storage_backing_readonly(root, err) < 0)
            return -1;
        /* The template's root is named, not read from the layer's header
         * (a layer kept in debug mode is one its QEMU wrote), and stays
         * root's: read by QEMU's group, written by no QEMU but its own. */
        qemulator_backing_label(backing_label, sizeof backing_label);
        s.disks[s.ndisks++] = (struct domain_disk){ .path = overlay, .format = "qcow2",
                                                    .backing = root,
                                                    .backing_label = backing_label };
        if (qubes_vm_dir(q, tpl, kdir, sizeof kdir, err) < 0)
            return -1;
    } else {
        if (qubes_vm_image(q, vm, "root_img", "root.img", root, sizeof root, err) < 0)
            return -1;
        if (!file_exists(root))
            return qerr_set(err, "'%s' has no root image (%s)", vm->name, root);
        s.disks[s.ndisks++] = (struct domain_disk){ .path = root, .format = "raw" };
        snprintf(kdir, sizeof kdir, "%s", dir);
    }
    if (!file_exists(priv)) {
        qsay(progress, "--> Creating private image %s", priv);
        if (storage_create_sparse(priv, STORAGE_PRIVATE_SIZE, err) < 0)
            return -1;
    }
    s.disks[s.ndisks++] = (struct domain_disk){ .path = priv, .format = "raw" };

    /* Its own kernel first, else its template's. */
    snprintf(kernel, sizeof kernel, "%s/kernel/vmlinuz", dir);
    if (file_exists(kernel))
        snprintf(kdir, sizeof kdir, "%s", dir);
    snprintf(kernel, sizeof kernel, "%s/kernel/vmlinuz", kdir);
    snprintf(initrd, sizeof initrd, "%s/kernel/initramfs", kdir);
    if (file_exists(kernel)) {
        if (kernel_cmdline(vm, &net, &serve, services, cmdline, sizeof cmdline, err) < 0)
            return -1;
        s.kernel = kernel;
        s.initrd = file_exists(initrd) ? initrd : NULL;
        s.cmdline = cmdline;
    } else {
        no_kernel_services(vm, services, progress);
    }
    snprintf(log, sizeof log, "%s/console.log", dir);
    s.serial_log = log;
    if (qrt_vm_path(&q->cfg, vm->name, NULL, rdir, sizeof rdir, err) < 0 ||
        qmkdirs(rdir, err) < 0 ||
        qrt_vm_path(&q->cfg, vm->name, QRT_AGENT_SOCK, sock, sizeof sock, err) < 0)
        return -1;
    unlink(sock);
    qvm_power_clear_ready(&q->cfg, vm->name);
    s.agent_socket = sock;
    spec_resources(vm, &s);

    /* Its uplink first (eth0), then the network it serves. */
    if (net.on) {
        if (vmm_network_ensure(&q->vmm, net.bridge, err) < 0)
            return -1;
        s.nics[s.nnics++] = (struct domain_nic){ net.mac, net.bridge, net.ifname };
    }
    if (serve.on) {
        if (vmm_network_ensure(&q->vmm, serve.bridge, err) < 0)
            return -1;
        s.nics[s.nnics++] = (struct domain_nic){ serve.mac, serve.bridge, serve.ifname };
    }
    /* Its chains are in place before its first frame. */
    if (net.on && vmguard_up(q, vm, err) < 0)
        return -1;
    s.mem_file = mem_file;
    s.mem_shared = true;
    qsay(progress, "--> Starting domain %s (%s, %ld MiB, %ld vCPU)", vm->name, s.type,
        s.memory_mib, s.vcpus);
    return vmm_create_spec(&q->vmm, &s, err);
}

/* The start lock of another host: this host's flock serialises the starts
 * of this orchestrator; another orchestrator driving the same host has its
 * own. So a start there also holds a volume of the host's pool, made by
 * the host's daemon only when none of that name exists (its pool's own
 * lock decides a race), from the template check until the domain exists:
 * two orchestrators cannot both see a template and its child halted and
 * start both. One left by a start that died is named after 30 s. */
#define HOST_START_LOCK "qubes-start.lock"
#define HOST_START_LOCK_WAIT_MS 30000

static int host_start_lock(struct vmm *vmm, const char *host, struct qerr *err)
{
    char path[PATH_MAX];
    long end = qnow_ms() + HOST_START_LOCK_WAIT_MS;
    for (;;) {
        unsigned long long sent;
        int rc = vmm_volume_path(vmm, QHOST_POOL, HOST_START_LOCK, path, sizeof path, err);
        if (rc < 0)
            return -1;
        if (rc == 0 && vmm_volume_upload(vmm, QHOST_POOL, HOST_START_LOCK, NULL, 512, &sent,
                                         err) == 0)
            return 0;
        /* Taken, or just taken by another start: wait, unless it is gone and
         * the creation failed for another reason. */
        if (rc == 0 && vmm_volume_path(vmm, QHOST_POOL, HOST_START_LOCK, path, sizeof path,
                                       NULL) != 1)
            return qerr_prefix(err, "cannot take the start lock of host '%s'", host);
        if (qnow_ms() > end)
            return qerr_set(err, "the start lock of host '%s' (volume %s of pool %s there) has "
                            "been held for %d s: another start runs there, or one died holding "
                            "it (then virsh -c %s vol-delete --pool %s %s)", host, HOST_START_LOCK,
                            QHOST_POOL, HOST_START_LOCK_WAIT_MS / 1000, vmm->uri, QHOST_POOL,
                            HOST_START_LOCK);
        usleep(100000);
    }
}

static void host_start_unlock(struct vmm *vmm)
{
    struct qerr e;
    vmm_volume_delete(vmm, QHOST_POOL, HOST_START_LOCK, &e);
}

/* Serialises the check-and-create of every start on the host. */
static int start_lock(const struct qubes *q, struct qerr *err)
{
    return qrt_lock(&q->cfg, QRT_START_LOCK, err);
}

/* Gives a VM loaded without one a UUID, saved in qubes.xml. */
static int ensure_uuid(struct qubes *q, const char *name, struct qerr *err)
{
    struct qvm *vm = qubes_find_vm(q, name, err);
    if (!vm || qvm_get_attr(vm, "uuid"))
        return vm ? 0 : -1;
    if (qubes_load_for_writing(q, false, err) < 0)
        return -1;
    int rc = (vm = qubes_find_vm(q, name, err)) ? QUBES_UNCHANGED : -1;
    if (vm && !qvm_get_attr(vm, "uuid")) {
        char uuid[37];
        qubes_new_uuid(uuid);
        rc = qvm_set_attr(vm, "uuid", uuid, err);
    }
    return qubes_commit(q, rc, err);
}

static int wait_agent(struct qubes *q, const struct qvm *vm, FILE *progress, struct qerr *err)
{
    char sock[PATH_MAX];
    struct vmm_domain d;
    long timeout = qvm_get_int(vm, "qrexec_timeout", 60) * 1000L;
    if (qrt_vm_path(&q->cfg, vm->name, QRT_QREXEC_SOCK, sock, sizeof sock, err) < 0)
        return -1;
    qsay(progress, "--> Waiting for the agent of %s (up to %ld s)", vm->name, timeout / 1000);
    long t0 = qnow_ms();
    struct agent_conn c;
    if (agent_connect(sock, timeout, &c, err) < 0)
        return qerr_prefix(err, "'%s' did not become ready", vm->name);
    agent_close(&c);
    struct vmm *vmm = qubes_vmm_of(q, vm, err);
    if (!vmm || vmm_domain_info(vmm, vm->name, &d, err) < 0)
        return -1;
    qvm_power_mark_ready(&q->cfg, vm->name, d.id);
    free(d.name);
    qsay(progress, "--> %s is running (agent ready after %ld ms)", vm->name, qnow_ms() - t0);
    return 0;
}

/* The VM's GUI starts: it learns the host's monitor layout. A VM that
 * cannot take it still runs; the start says so. */
static void send_monitor_layout(struct qubes *q, const char *name, FILE *progress)
{
    char layout[QMONITOR_MAX * 32], sock[PATH_MAX];
    const char *source = NULL;
    struct qerr e;
    if (qmonitor_layout(&q->cfg, layout, sizeof layout, &source, &e) < 0) {
        qsay(progress, "warning: %s", e.msg);
        return;
    }
    if (!layout[0] || qrt_vm_path(&q->cfg, name, QRT_QREXEC_SOCK, sock, sizeof sock, &e) < 0)
        return;
    if (qmonitor_send(sock, layout, &e) < 0)
        qsay(progress, "warning: %s: %s", name, e.msg);
    else
        qsay(progress, "--> Monitor layout (from %s) sent to %s", source, name);
}

/* The netvm chain of a VM runs before it: its gateway is a guest. A chain
 * longer than this is a loop in qubes.xml. */
#define NETVM_CHAIN_MAX 8

static int start_vm(struct qubes *q, const char *name, const struct qvm_start_opts *o, int depth,
                    struct qerr *err);

static int netvm_up(struct qubes *q, int netvm_qid, const char *for_whom, FILE *progress,
                    int depth, struct qerr *err)
{
    if (netvm_qid < 0 || vmm_is_test_driver(&q->vmm))
        return 0;
    const struct qvm *nv = qvm_collection_by_qid(q->coll, netvm_qid);
    enum qvm_power st;
    if (!nv)
        return qerr_set(err, "'%s': its netvm (qid %d) does not exist", for_whom, netvm_qid);
    if (depth >= NETVM_CHAIN_MAX)
        return qerr_set(err, "'%s': its chain of netvms is longer than %d (a loop?)", for_whom,
                        NETVM_CHAIN_MAX);
    if (qubes_vm_power(q, nv, NULL, &st, err) < 0)
        return -1;
    if (st == QVM_POWER_RUNNING || st == QVM_POWER_TRANSIENT)
        return 0;
    char nname[256], vname[256];
    snprintf(nname, sizeof nname, "%s", nv->name);
    snprintf(vname, sizeof vname, "%s", for_whom);
    qsay(progress, "--> Starting %s, the netvm of %s, first", nname, vname);
    struct qvm_start_opts so = { .wait = true, .progress = progress };
    if (start_vm(q, nname, &so, depth + 1, err) < 0)
        return qerr_prefix(err, "cannot start '%s' without its netvm", vname);
    return 0;
}

int qubes_netvm_up(struct qubes *q, int netvm_qid, const char *for_whom, FILE *progress,
                   struct qerr *err)
{
    if (qubes_load_for_reading(q, err) < 0)
        return -1;
    return netvm_up(q, netvm_qid, for_whom, progress, 0, err);
}

/* A ProxyVM routes its networks to its netvm without translation: the
 * netvm learns the way back through it. Both are guests running our agent;
 * the command is made of numbers only. */
static int announce_routes(struct qubes *q, const char *name, FILE *progress, struct qerr *err)
{
    struct qvm *vm = qubes_find_vm(q, name, err);
    struct qnet net;
    struct qnet_serving serve;
    if (!vm || qnet_of_vm(q->coll, vm, &net, err) < 0)
        return -1;
    qnet_serving_of_vm(vm, &serve);
    if (!serve.on || !net.on || vmm_is_test_driver(&q->vmm))
        return 0;
    const struct qvm *nv = qvm_collection_by_qid(q->coll, vm->netvm_qid);
    if (!nv)
        return 0;
    char cmd[256], nname[256];
    snprintf(nname, sizeof nname, "%s", nv->name);
    snprintf(cmd, sizeof cmd,
             "ip route replace 10.137.%d.0/24 via %s && ip route replace 10.138.%d.0/24 via %s",
             serve.netid, net.ip, serve.netid, net.ip);
    struct qvm_run_opts ro = { .user = "root", .command = cmd, .timeout_ms = 10000 };
    int status = 0;
    if (qubes_vm_run(q, nname, &ro, &status, err) < 0 || status != 0) {
        if (status != 0)
            qerr_set(err, "'%s' did not take the route to network %d (status %d)", nname,
                     serve.netid, status);
        return qerr_prefix(err, "the networks of '%s' are not routed", name);
    }
    qsay(progress, "--> %s routes networks %d through %s", nname, serve.netid, name);
    return 0;
}

/* A netvm that starts again (a restart with --force, a crash) has lost the
 * routes of the ProxyVMs still running behind it: each is announced anew.
 * Their names are taken first: an announcement reads qubes.xml again. */
static int announce_behind(struct qubes *q, const char *name, FILE *progress, struct qerr *err)
{
    const struct qvm *nv = qubes_find_vm(q, name, err);
    if (!nv)
        return -1;
    struct qnet_serving serve;
    qnet_serving_of_vm(nv, &serve);
    if (!serve.on || vmm_is_test_driver(&q->vmm))
        return 0;
    size_t n, k = 0;
    struct qvm **all = qvm_collection_sorted(q->coll, &n);
    char **proxies = all ? calloc(n, sizeof *proxies) : NULL;
    int rc = proxies ? 0 : qerr_errno(err, ENOMEM, "VM list");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        struct qnet_serving behind;
        enum qvm_power st;
        if (all[i]->netvm_qid != nv->qid || all[i] == nv)
            continue;
        qnet_serving_of_vm(all[i], &behind);
        if (!behind.on)
            continue;
        if (qubes_vm_power(q, all[i], NULL, &st, err) < 0)
            rc = -1;
        else if (qvm_power_is_running(st) && !(proxies[k++] = strdup(all[i]->name)))
            rc = qerr_errno(err, ENOMEM, "VM list");
    }
    free(all);
    for (size_t i = 0; i < k; i++) {
        if (rc == 0 && proxies[i])
            rc = announce_routes(q, proxies[i], progress, err);
        free(proxies[i]);
    }
    free(proxies);
    return rc;
}

int qubes_vm_start(struct qubes *q, const char *name, const struct qvm_start_opts *o,
                   struct qerr *err)
{
    return start_vm(q, name, o, 0, err);
}

static int start_vm(struct qubes *q, const char *name, const struct qvm_start_opts *o, int depth,
                    struct qerr *err)
{
    /* Before anything of a running VM's is touched (its layer, its agent's
     * socket): offline, a VM cannot be known halted. */
    if (q->vmm.offline && vmm_require(&q->vmm, err) < 0)
        return qerr_prefix(err, "cannot start '%s'", name);
    if (qubes_load_for_reading(q, err) < 0 || ensure_uuid(q, name, err) < 0)
        return -1;
    struct qvm *vm = qubes_find_vm(q, name, err);
    if (!vm)
        return -1;
    if (vm->cls == QVM_ADMIN)
        return qerr_set(err, "dom0 is always running");
    struct vmm *vmm = qubes_vmm_of(q, vm, err);
    if (!vmm)
        return -1;
    if (qvm_host(vm) && (vm->netvm_qid >= 0 || qvm_class_is_netvm(vm->cls)))
        return qerr_set(err, "cannot start '%s' on host '%s': networks are this host's, and a "
                        "VM on another host has none yet (qvm-prefs -s %s netvm none)", name,
                        qvm_host(vm), name);
    if (netvm_up(q, vm->netvm_qid, vm->name, o->progress, depth, err) < 0)
        return -1;
    /* That start may have read qubes.xml again. */
    if (!(vm = qubes_find_vm(q, name, err)))
        return -1;
    cleanup_close int lock = start_lock(q, err);
    if (lock < 0)
        return -1;
    if (qvm_host(vm) && host_start_lock(vmm, qvm_host(vm), err) < 0)
        return qerr_prefix(err, "cannot start '%s'", name);
    enum qvm_power st;
    int rc = qubes_vm_power(q, vm, NULL, &st, err);
    /* A VM that runs without its qrexec-daemon (it died, or a VM on another
     * host lost its relay when that host's daemon restarted) is served
     * again: its relay and its daemon, no new domain. */
    bool again = rc == 0 && vm->cls != QVM_DISP &&
                 (st == QVM_POWER_RUNNING || st == QVM_POWER_TRANSIENT) &&
                 !vmm_is_test_driver(vmm) && !qubes_qrexecd_alive(q, vm->name);
    if (again) {
        qsay(o->progress, "--> %s runs without its qrexec daemon: serving it again", name);
        if (qvm_host(vm))
            rc = qubes_channel_relay_spawn(vm->name, err);
    } else {
        if (rc == 0)
            rc = qvm_op_allowed(QOP_START, st, err);
        if (rc == 0 && st == QVM_POWER_CRASHED)
            rc = vmm_destroy(vmm, vm->name, err);
        if (rc == 0)
            rc = qubes_template_exclusion(q, vm, err);
        if (rc == 0 && o->debug)
            qsay(o->progress, "--> Debug mode for this start: %s", vm->template_qid >= 0
                 ? "the root layer is kept" : "no template, no root layer to keep");
        if (rc == 0)
            rc = qvm_host(vm) ? build_remote_spec_and_start(q, vm, vmm, o->progress, err)
                              : build_spec_and_start(q, vm, o->progress, o->mem_file, o->debug,
                                                     err);
    }
    if (rc == 0 && !vmm_is_test_driver(vmm) &&
        (rc = qrexec_daemon_spawn(&q->cfg, vm->name, err)) < 0 && !again) {
        struct qerr e;
        vmm_destroy(vmm, vm->name, &e);  /* a VM nobody can talk to is no use */
    }
    if (qvm_host(vm))
        host_start_unlock(vmm);
    qclose(&lock);      /* the domain exists: other starts see it running */
    if (rc < 0)
        return qerr_prefix(err, again ? "cannot serve '%s' again" : "cannot start '%s'", name);
    if (again)
        return o->wait ? wait_agent(q, vm, o->progress, err) : 0;
    if (o->debug) {
        char dir[PATH_MAX], rdir[PATH_MAX];
        if (qubes_vm_dir(q, vm, dir, sizeof dir, NULL) == 0 &&
            qrt_vm_path(&q->cfg, name, NULL, rdir, sizeof rdir, NULL) == 0)
            qsay(o->progress, "--> Debug mode: logs in %s/console.log and %s/qrexec.log", dir,
                 rdir);
    }
    /* Its netvm runs and answers (netvm_up waited for it): the way back
     * through this VM is told now, whether or not this start waits. */
    if (announce_routes(q, name, o->progress, err) < 0)
        return -1;
    if (!o->wait)
        return 0;
    /* The announcement read qubes.xml again. */
    if (!(vm = qubes_find_vm(q, name, err)) || wait_agent(q, vm, o->progress, err) < 0 ||
        announce_behind(q, name, o->progress, err) < 0)
        return -1;
    if (o->gui)
        send_monitor_layout(q, name, o->progress);
    return 0;
}

/* ---- stopping ---- */

static int load_and_check(struct qubes *q, const char *name, enum qvm_op op, struct qvm **vm,
                          enum qvm_power *st, struct qerr *err)
{
    if (qubes_load_for_reading(q, err) < 0 || !(*vm = qubes_find_vm(q, name, err)))
        return -1;
    if ((*vm)->cls == QVM_ADMIN)
        return qerr_set(err, "dom0 cannot be %s", op == QOP_START ? "started" : "stopped");
    if (qubes_vm_power(q, *vm, NULL, st, err) < 0)
        return -1;
    return qvm_op_allowed(op, *st, err);
}

static int wait_halted(struct qubes *q, const struct qvm *vm, long timeout_ms, struct qerr *err)
{
    const char *name = vm->name;
    struct vmm *vmm = qubes_vmm_of(q, vm, err);
    long end = qnow_ms() + timeout_ms;
    for (;;) {
        struct vmm_domain d;
        if (!vmm || vmm_domain_info(vmm, name, &d, err) < 0)
            return -1;
        free(d.name);
        if (d.state == QVM_POWER_HALTED)
            return 0;
        if (qnow_ms() > end)
            return qerr_set(err, "'%s' did not shut down within %ld s (qvm-kill stops it at once)",
                            name, timeout_ms / 1000);
        usleep(50000);
    }
}

/* The original's rule: a NetVM or ProxyVM with running VMs behind it is
 * not shut down unless the caller insists (they would lose their network). */
static int check_no_vms_behind(struct qubes *q, const struct qvm *nv, struct qerr *err)
{
    size_t n;
    struct qvm **all = qvm_collection_sorted(q->coll, &n);
    char names[512] = "";
    size_t used = 0;
    int rc = all ? 0 : qerr_errno(err, ENOMEM, "VM list");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        enum qvm_power st;
        if (all[i]->netvm_qid != nv->qid || all[i] == nv)
            continue;
        if (qubes_vm_power(q, all[i], NULL, &st, err) < 0)
            rc = -1;
        else if (qvm_power_is_running(st) && used < sizeof names)
            used += (size_t)snprintf(names + used, sizeof names - used, "%s%s", used ? ", " : "",
                                     all[i]->name);
    }
    free(all);
    if (rc == 0 && used)
        rc = qerr_set(err, "'%s' is the netvm of running VMs (%s): shut them down first, or "
                      "use --force", nv->name, names);
    return rc;
}

static int ask_poweroff(struct qubes *q, const struct qvm *vm, long timeout_ms, bool force,
                        struct qerr *err);
static void forget_run(struct qubes *q, const struct qvm *vm);

int qubes_vm_shutdown(struct qubes *q, const char *name, long timeout_ms, bool force,
                      struct qerr *err)
{
    struct qvm *vm;
    enum qvm_power st;
    if (load_and_check(q, name, QOP_SHUTDOWN, &vm, &st, err) < 0 ||
        ask_poweroff(q, vm, timeout_ms, force, err) < 0)
        return -1;
    int rc = wait_halted(q, vm, timeout_ms, err);
    if (rc == 0)
        forget_run(q, vm);
    return rc;
}

/* The checks of a shutdown beyond the transition table (the netvm rule),
 * then the request to the guest's agent, through its qrexec-daemon. */
static int ask_poweroff(struct qubes *q, const struct qvm *vm, long timeout_ms, bool force,
                        struct qerr *err)
{
    char sock[PATH_MAX];
    struct agent_conn c;
    if ((!force && qvm_class_is_netvm(vm->cls) && check_no_vms_behind(q, vm, err) < 0) ||
        qrt_vm_path(&q->cfg, vm->name, QRT_QREXEC_SOCK, sock, sizeof sock, err) < 0)
        return -1;
    if (agent_connect(sock, timeout_ms < 5000 ? timeout_ms : 5000, &c, err) < 0)
        return qerr_prefix(err, "cannot ask '%s' to shut down", vm->name);
    int rc = agent_shutdown(&c, err);
    agent_close(&c);
    return rc;
}

/* A VM that halted leaves its agent's mark and its firewall chains. */
static void forget_run(struct qubes *q, const struct qvm *vm)
{
    struct qerr e;
    qvm_power_clear_ready(&q->cfg, vm->name);
    vmguard_down(q, vm, &e);
}

/* ---- every running VM: qvm-run --all, qvm-shutdown --all ---- */

static bool excluded(const char *name, const char *const *exclude, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(exclude[i], name) == 0)
            return true;
    return false;
}

/* The VMs whose state `want` accepts, dom0 and `exclude` left out, from
 * one list of the hypervisor's domains; in qid order (malloc'ed array). */
static int select_vms(struct qubes *q, const char *const *exclude, size_t nexclude,
                      bool (*want)(const struct qvm *, enum qvm_power), struct qvm ***out,
                      size_t *n, struct qerr *err)
{
    struct vmm_domain *doms;
    size_t ndoms, nall;
    /* Offline, every VM reads as Halted: "none runs" would be a guess. */
    if (q->vmm.offline && vmm_require(&q->vmm, err) < 0)
        return -1;
    for (size_t i = 0; i < nexclude; i++)
        if (!qubes_find_vm(q, exclude[i], err))
            return qerr_prefix(err, "cannot leave out '%s'", exclude[i]);
    if (vmm_list_domains(&q->vmm, &doms, &ndoms, err) < 0)
        return -1;
    struct qvm **all = qvm_collection_sorted(q->coll, &nall);
    if (!all) {
        vmm_domains_free(doms, ndoms);
        return qerr_errno(err, ENOMEM, "VM list");
    }
    *n = 0;
    for (size_t i = 0; i < nall; i++) {
        enum qvm_power st = QVM_POWER_HALTED;
        if (all[i]->cls == QVM_ADMIN || excluded(all[i]->name, exclude, nexclude))
            continue;
        for (size_t k = 0; k < ndoms; k++)
            if (strcmp(doms[k].name, all[i]->name) == 0)
                st = qubes_refine_power(q, all[i], &doms[k]);
        if (want(all[i], st))
            all[(*n)++] = all[i];
    }
    vmm_domains_free(doms, ndoms);
    *out = all;
    return 0;
}

static bool takes_commands(const struct qvm *vm, enum qvm_power st)
{
    /* A preload waits for a request to claim it: nobody's yet. */
    return (st == QVM_POWER_RUNNING || st == QVM_POWER_TRANSIENT) &&
           !qvm_get_bool(vm, "preload", false);
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int qubes_running_vms(struct qubes *q, const char *const *exclude, size_t nexclude,
                      char ***names, size_t *n, struct qerr *err)
{
    struct qvm **vms;
    if (qubes_load_for_reading(q, err) < 0 ||
        select_vms(q, exclude, nexclude, takes_commands, &vms, n, err) < 0)
        return -1;
    char **out = calloc(*n + 1, sizeof *out);
    for (size_t i = 0; out && i < *n; i++)
        if (!(out[i] = strdup(vms[i]->name))) {
            for (size_t k = 0; k < i; k++)
                free(out[k]);
            free(out);
            out = NULL;
        }
    free(vms);
    if (!out)
        return qerr_errno(err, ENOMEM, "VM list");
    qsort(out, *n, sizeof *out, cmp_names);
    *names = out;
    return 0;
}

static bool stoppable(const struct qvm *vm, enum qvm_power st)
{
    (void)vm;
    return qvm_power_is_running(st) && st != QVM_POWER_CRASHED;
}

/* One VM of a shutdown of many. */
struct halting {
    struct qvm *vm;
    enum { H_PENDING, H_ASKED, H_HALTED, H_STAYED } state;
    long deadline;              /* qnow_ms() it must be halted by, once asked */
};

/* Whether a VM that has not gone yet uses `nv` as its netvm: then `nv`
 * waits (it would refuse, or leave the VM without its network). */
static bool still_served(const struct halting *h, size_t n, const struct qvm *nv)
{
    for (size_t i = 0; i < n; i++)
        if ((h[i].state == H_PENDING || h[i].state == H_ASKED) && h[i].vm != nv &&
            h[i].vm->netvm_qid == nv->qid)
            return true;
    return false;
}

/* The reasons VMs stayed, for the one error message. */
struct stayed {
    int n;
    size_t used;
    char text[QERR_MSG_MAX - 64];
};

static void stays(struct halting *h, struct stayed *s, const char *why)
{
    h->state = H_STAYED;
    s->n++;
    if (s->used < sizeof s->text)
        s->used += (size_t)snprintf(s->text + s->used, sizeof s->text - s->used, "%s%s",
                                    s->used ? "; " : "", why);
}

static void ask_one(struct qubes *q, struct halting *h, long timeout_ms, bool force,
                    FILE *progress, struct stayed *s)
{
    enum qvm_power st;
    struct qerr e;
    if (qubes_vm_power(q, h->vm, NULL, &st, &e) < 0)
        return stays(h, s, e.msg);
    if (st == QVM_POWER_HALTED) {       /* gone by itself meanwhile */
        h->state = H_HALTED;
        forget_run(q, h->vm);
        return;
    }
    if (qvm_op_allowed(QOP_SHUTDOWN, st, &e) < 0) {
        qerr_prefix(&e, "'%s'", h->vm->name);
        return stays(h, s, e.msg);
    }
    qsay(progress, "--> Shutting down %s", h->vm->name);
    if (ask_poweroff(q, h->vm, timeout_ms, force, &e) < 0)
        return stays(h, s, e.msg);
    h->state = H_ASKED;
    h->deadline = qnow_ms() + timeout_ms;
}

/* 1 while an asked VM is still on its way down. */
static int check_asked(struct qubes *q, struct halting *h, long timeout_ms, FILE *progress,
                       struct stayed *s)
{
    struct vmm_domain d;
    struct qerr e;
    struct vmm *vmm = qubes_vmm_of(q, h->vm, &e);
    if (!vmm || vmm_domain_info(vmm, h->vm->name, &d, &e) < 0) {
        stays(h, s, e.msg);
        return 0;
    }
    free(d.name);
    if (d.state == QVM_POWER_HALTED) {
        h->state = H_HALTED;
        forget_run(q, h->vm);
        qsay(progress, "--> %s is halted", h->vm->name);
        return 0;
    }
    if (qnow_ms() <= h->deadline)
        return 1;
    qerr_set(&e, "'%s' did not shut down within %ld s (qvm-kill stops it at once)", h->vm->name,
             timeout_ms / 1000);
    stays(h, s, e.msg);
    return 0;
}

static bool autostarts(const struct qvm *vm, enum qvm_power st)
{
    return st == QVM_POWER_HALTED && vm->cls != QVM_DISP && qvm_get_bool(vm, "autostart", false);
}

/* Hops from `vm` to the end of its netvm chain (a loop counts as long). */
static int chain_depth(const struct qubes *q, const struct qvm *vm)
{
    int d = 0;
    for (const struct qvm *v = vm; v && v->netvm_qid >= 0 && d <= QUBES_MAX_NETID; d++)
        v = qvm_collection_by_qid(q->coll, v->netvm_qid);
    return d;
}

int qubes_vm_start_autostart(struct qubes *q, const struct qvm_start_opts *o, int *started,
                             struct qerr *err)
{
    struct qvm **vms;
    size_t n;
    *started = 0;
    if (qubes_load_for_reading(q, err) < 0 || select_vms(q, NULL, 0, autostarts, &vms, &n, err) < 0)
        return -1;
    /* Names, not records: each start reloads the collection. */
    struct { char name[QUBES_NAME_MAX + 1]; int depth; } *list = calloc(n + 1, sizeof *list);
    if (!list) {
        free(vms);
        return qerr_errno(err, ENOMEM, "autostart");
    }
    for (size_t i = 0; i < n; i++) {
        snprintf(list[i].name, sizeof list[i].name, "%s", vms[i]->name);
        list[i].depth = chain_depth(q, vms[i]);
    }
    free(vms);
    /* Stable by depth: netvms first, then in qvm_collection_sorted's order. */
    for (size_t i = 1; i < n; i++)
        for (size_t k = i; k > 0 && list[k - 1].depth > list[k].depth; k--) {
            typeof(*list) t = list[k];
            list[k] = list[k - 1];
            list[k - 1] = t;
        }
    if (n == 0)
        qsay(o->progress, "--> No VM is marked autostart, or all of them run");
    struct stayed s = { 0 };
    for (size_t i = 0; i < n; i++) {
        struct qerr e;
        enum qvm_power st;
        struct halting h = { 0 };
        /* Started meanwhile as another's netvm: done. */
        struct qvm *vm = qubes_find_vm(q, list[i].name, &e);
        if (vm && qubes_vm_state(q, vm, &st, &e) == 0 && st != QVM_POWER_HALTED)
            continue;
        if (qubes_vm_start(q, list[i].name, o, &e) < 0) {
            char why[QERR_MSG_MAX + QUBES_NAME_MAX + 8];
            snprintf(why, sizeof why, "'%s': %s", list[i].name, e.msg);
            stays(&h, &s, why);
        }
        else
            (*started)++;
    }
    free(list);
    if (s.n)
        return qerr_set(err, "%d of %zu autostart VMs did not start: %s", s.n, n, s.text);
    return 0;
}

int qubes_vm_shutdown_all(struct qubes *q, const char *const *exclude, size_t nexclude,
                          long timeout_ms, bool force, FILE *progress, struct qerr *err)
{
    struct qvm **vms;
    size_t n;
    if (qubes_load_for_reading(q, err) < 0 ||
        select_vms(q, exclude, nexclude, stoppable, &vms, &n, err) < 0)
        return -1;
    struct halting *h = calloc(n + 1, sizeof *h);
    struct stayed s = { 0 };
    if (!h) {
        free(vms);
        return qerr_errno(err, ENOMEM, "shutting down");
    }
    for (size_t i = 0; i < n; i++)
        h[i] = (struct halting){ .vm = vms[i], .state = H_PENDING };
    if (n == 0)
        qsay(progress, "--> No VM runs");
    for (;;) {
        bool moved = false, waiting = false, pending = false;
        for (size_t i = 0; i < n; i++)
            if (h[i].state == H_PENDING && !still_served(h, n, h[i].vm)) {
                ask_one(q, &h[i], timeout_ms, force, progress, &s);
                moved = true;
            }
        for (size_t i = 0; i < n; i++) {
            if (h[i].state == H_ASKED) {
                if (check_asked(q, &h[i], timeout_ms, progress, &s))
                    waiting = true;
                else
                    moved = true;   /* halted, or stays */
            }
            pending |= h[i].state == H_PENDING;
        }
        if (!waiting && !moved && pending) {
            /* Only VMs that serve each other are left: a loop of netvms,
             * which qubes.xml may not hold. */
            for (size_t i = 0; i < n; i++)
                if (h[i].state == H_PENDING)
                    stays(&h[i], &s, "its netvm chain loops");
            break;
        }
        if (!waiting && !pending)
            break;
        if (waiting)
            usleep(50000);
    }
    free(h);
    free(vms);
    if (s.n)
        return qerr_set(err, "%d of %zu VMs did not shut down: %s", s.n, n, s.text);
    return 0;
}

/* ---- a command's streams (qubes_vm_run, below) ---- */

/* The session itself: a command or a service, with these streams. */
static int session_with(struct agent_conn *c, const char *user, const struct qvm_run_opts *o,
                        int in, int out, int errfd, int *status, struct qerr *err)
{
    return o->service ? agent_service(c, user, o->service, o->source ? o->source : "dom0", in,
                                      out, errfd, status, err)
                      : agent_exec(c, user, o->command, in, out, errfd, status, err);
}

/* qvm-run --localcmd. The session's pump (qmux_pump) writes the command's
 * output to us blocking, and reads its input only in between: connected
 * to the local command straight, a local command that writes before it
 * reads would wait on the pump while the pump waits on it, where two
 * pipes would have let both go on. So a relay thread stands between them,
 * always ready to take the command's output (a window of it), and taking
 * the local command's output beyond a window while the command's output
 * waits for the local command to read (then the pump may be waiting on
 * us, and the local command on the pump). A local command that goes away
 * is a reader gone: the command's output is dropped from then on, the
 * command runs to its end. */
#define RELAY_WINDOW (64 * 1024)
#define RELAY_HOLD_MAX (64L * 1024 * 1024)

struct relay_buf {
    char *data;
    size_t off, len, cap;       /* the bytes held are data[off .. off+len) */
};

struct local_relay {
    int lout;                   /* the local command's output (we read) */
    int to_session;             /* the session's input (we write) */
    int from_session;           /* the session's output (we read) */
    int lin;                    /* the local command's input (we write) */
    struct relay_buf up, down;  /* toward the VM, toward the local command */
};

static void relay_close(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* Reads at most a window from fd into b: 0 at its end, -1 with errno. */
static ssize_t relay_read(int fd, struct relay_buf *b)
{
    if (b->len == 0)
        b->off = 0;
    if (b->cap - b->off - b->len < RELAY_WINDOW && b->off) {
        memmove(b->data, b->data + b->off, b->len);
        b->off = 0;
    }
    if (b->cap - b->len < RELAY_WINDOW) {
        size_t cap = b->cap ? b->cap * 2 : 2 * RELAY_WINDOW;
        char *p = realloc(b->data, cap);
        if (!p)
            return -1;
        b->data = p;
        b->cap = cap;
    }
    ssize_t r = read(fd, b->data + b->off + b->len, RELAY_WINDOW);
    if (r > 0)
        b->len += (size_t)r;
    return r;
}

static ssize_t relay_write(int fd, struct relay_buf *b)
{
    ssize_t w = write(fd, b->data + b->off, b->len);
    if (w > 0) {
        b->off += (size_t)w;
        b->len -= (size_t)w;
    }
    return w;
}

static bool relay_failed(ssize_t r)
{
    return r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR);
}

/* One turn: what each end may do now, then poll. false when all is closed. */
static bool relay_turn(struct local_relay *r)
{
    /* An input whose source has ended and whose bytes went gets its end;
     * a local command whose reader (the session) is gone gets SIGPIPE. */
    if (r->lout < 0 && r->up.len == 0)
        relay_close(&r->to_session);
    if (r->to_session < 0) {
        relay_close(&r->lout);
        r->up.len = 0;
    }
    if (r->from_session < 0 && r->down.len == 0)
        relay_close(&r->lin);
    if (r->lout < 0 && r->to_session < 0 && r->from_session < 0 && r->lin < 0)
        return false;
    bool pump_waits = r->down.len >= RELAY_WINDOW;
    struct pollfd p[4];
    int n = 0, i_lout = -1, i_to = -1, i_from = -1, i_lin = -1;
    if (r->lout >= 0 &&
        (r->up.len < RELAY_WINDOW || (pump_waits && r->up.len < (size_t)RELAY_HOLD_MAX))) {
        i_lout = n;
        p[n++] = (struct pollfd){ r->lout, POLLIN, 0 };
    }
    if (r->to_session >= 0) {   /* no event asked: POLLERR once the session is over */
        i_to = n;
        p[n++] = (struct pollfd){ r->to_session, r->up.len ? POLLOUT : 0, 0 };
    }
    if (r->from_session >= 0 && (r->down.len < RELAY_WINDOW || r->lin < 0)) {
        i_from = n;
        p[n++] = (struct pollfd){ r->from_session, POLLIN, 0 };
    }
    if (r->lin >= 0 && r->down.len) {
        i_lin = n;
        p[n++] = (struct pollfd){ r->lin, POLLOUT, 0 };
    }
    if (poll(p, (nfds_t)n, -1) < 0)
        return errno == EINTR;
    if (i_lout >= 0 && p[i_lout].revents && relay_failed(relay_read(r->lout, &r->up)))
        relay_close(&r->lout);
    if (i_to >= 0 && (p[i_to].revents & POLLOUT)) {
        if (relay_failed(relay_write(r->to_session, &r->up)))
            relay_close(&r->to_session);
    } else if (i_to >= 0 && p[i_to].revents) {
        relay_close(&r->to_session);
    }
    if (i_from >= 0 && p[i_from].revents) {
        if (relay_failed(relay_read(r->from_session, &r->down)))
            relay_close(&r->from_session);
        if (r->lin < 0)
            r->down.len = 0;    /* nobody reads it any more */
    }
    if (i_lin >= 0 && p[i_lin].revents && relay_failed(relay_write(r->lin, &r->down))) {
        relay_close(&r->lin);
        r->down.len = 0;
    }
    return true;
}

static void *relay_main(void *arg)
{
    struct local_relay *r = arg;
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, NULL);    /* a reader gone is EPIPE here */
    while (relay_turn(r))
        ;
    relay_close(&r->lout);
    relay_close(&r->to_session);
    relay_close(&r->from_session);
    relay_close(&r->lin);
    return NULL;
}

/* The local command, by /bin/sh -c, with `in` and `out` as its input and
 * output, SIGPIPE as a shell would give it (we may ignore it). */
static int spawn_local(const char *cmd, int in, int out, pid_t *pid, struct qerr *err)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t dflt, none;
    char *argv[] = { "sh", "-c", (char *)cmd, NULL };
    sigemptyset(&dflt);
    sigaddset(&dflt, SIGPIPE);
    sigemptyset(&none);
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    posix_spawn_file_actions_adddup2(&fa, in, 0);
    posix_spawn_file_actions_adddup2(&fa, out, 1);
    posix_spawnattr_setsigdefault(&at, &dflt);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    int r = posix_spawn(pid, "/bin/sh", &fa, &at, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    return r ? qerr_errno(err, r, "cannot run the local command") : 0;
}

static void close_pair(int p[2])
{
    relay_close(&p[0]);
    relay_close(&p[1]);
}

/* Says how a local command that failed ended (one that a closed input
 * ended with SIGPIPE did not fail). */
static void report_local(FILE *progress, int ws)
{
    if (WIFEXITED(ws) && WEXITSTATUS(ws) != 0)
        qsay(progress, "warning: the local command exited with status %d", WEXITSTATUS(ws));
    else if (WIFSIGNALED(ws) && WTERMSIG(ws) != SIGPIPE)
        qsay(progress, "warning: the local command was killed by signal %d", WTERMSIG(ws));
}

/* The session with the local command at the other end of its input and
 * output (its error output is ours). Closes c. */
static int session_with_local(struct agent_conn *c, const char *user,
                              const struct qvm_run_opts *o, int *status, struct qerr *err)
{
    int lo[2] = { -1, -1 }, li[2] = { -1, -1 }, up[2] = { -1, -1 }, down[2] = { -1, -1 };
    pid_t pid;
    pthread_t t;
    if (pipe2(lo, O_CLOEXEC) < 0 || pipe2(li, O_CLOEXEC) < 0 || pipe2(up, O_CLOEXEC) < 0 ||
        pipe2(down, O_CLOEXEC) < 0) {
        qerr_errno(err, errno, "pipe");
        goto fail;
    }
    if (spawn_local(o->local_command, li[0], lo[1], &pid, err) < 0)
        goto fail;
    relay_close(&li[0]);
    relay_close(&lo[1]);
    struct local_relay r = { .lout = lo[0], .to_session = up[1], .from_session = down[0],
                             .lin = li[1] };
    int fds[4] = { lo[0], up[1], down[0], li[1] };
    for (int i = 0; i < 4; i++)
        fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
    int rc = pthread_create(&t, NULL, relay_main, &r);
    bool relaying = rc == 0;
    if (relaying) {
        rc = session_with(c, user, o, up[0], down[1], 2, status, err);
    } else {
        rc = qerr_errno(err, rc, "cannot relay the local command's streams");
        close_pair(lo);
        close_pair(li);
    }
    agent_close(c);
    /* The session is over: the relay hands the local command what it
     * holds, then its input's end; it gives up the local command's output
     * (SIGPIPE if it writes on). */
    relay_close(&up[0]);
    relay_close(&down[1]);
    if (rc < 0)
        kill(pid, SIGTERM);
    if (relaying) {
        pthread_join(t, NULL);
    } else {
        close_pair(up);
        close_pair(down);
    }
    free(r.up.data);
    free(r.down.data);
    int ws = 0;
    while (waitpid(pid, &ws, 0) < 0 && errno == EINTR)
        ;
    if (rc == 0)
        report_local(o->progress, ws);
    return rc;
fail:
    close_pair(lo);
    close_pair(li);
    close_pair(up);
    close_pair(down);
    agent_close(c);
    return -1;
}

int qubes_vm_kill(struct qubes *q, const char *name, struct qerr *err)
{
    struct qvm *vm;
    enum qvm_power st;
    if (load_and_check(q, name, QOP_KILL, &vm, &st, err) < 0)
        return -1;
    struct vmm *vmm = qubes_vmm_of(q, vm, err);
    if (!vmm || vmm_destroy(vmm, name, err) < 0)
        return -1;
    qvm_power_clear_ready(&q->cfg, name);
    struct qerr e;
    vmguard_down(q, vm, &e);    /* chains of a gone interface only cost memory */
    return 0;
}

/* qvm-pause marks the pause in the VM's run directory before it pauses the
 * domain, and qvm-unpause clears the mark once the domain runs again (a
 * start or a kill clears it too, with the agent's `ready`): qubes_vm_run
 * asks no hypervisor while a VM's qrexec-daemon answers, and a paused
 * guest's daemon answers. */
int qubes_vm_pause(struct qubes *q, const char *name, struct qerr *err)
{
    struct qvm *vm;
    enum qvm_power st;
    struct vmm_domain d;
    struct vmm *vmm = NULL;
    if (load_and_check(q, name, QOP_PAUSE, &vm, &st, err) < 0 ||
        !(vmm = qubes_vmm_of(q, vm, err)) || vmm_domain_info(vmm, name, &d, err) < 0)
        return -1;
    free(d.name);
    if (qvm_power_mark_paused(&q->cfg, name, d.id, err) < 0)
        return -1;
    if (vmm_suspend(vmm, name, err) < 0) {
        qvm_power_clear_paused(&q->cfg, name);
        return -1;
    }
    return 0;
}

int qubes_vm_unpause(struct qubes *q, const char *name, struct qerr *err)
{
    struct qvm *vm;
    enum qvm_power st = QVM_POWER_NA;
    int rc = load_and_check(q, name, QOP_UNPAUSE, &vm, &st, err);
    struct vmm *vmm = rc == 0 ? qubes_vmm_of(q, vm, err) : NULL;
    if (rc == 0)
        rc = vmm ? vmm_resume(vmm, name, err) : -1;
    /* A VM that is not paused (resumed behind our back: virsh resume) has
     * no pause to mark either: the refusal clears it too. */
    if (rc == 0 || (st != QVM_POWER_PAUSED && st != QVM_POWER_NA))
        qvm_power_clear_paused(&q->cfg, name);
    return rc;
}

/* ---- running commands ---- */

/* The fast path. A VM whose qrexec-daemon accepts a connection runs and
 * its agent has answered (the daemon binds its socket only then, and
 * unlinks it when the VM's channel closes), so a command needs no
 * hypervisor: not even its backend is loaded. 1: connected (*c is open);
 * 0: ask the hypervisor (the socket does not answer, or the VM may be
 * paused); -1: an error.
 *
 * A paused guest's daemon still accepts, and the guest would not answer:
 * qvm-pause marks its pause (power.h), and a marked VM goes the slow way,
 * where the transition table refuses it. So does a preloaded DispVM, which
 * waits paused (by dispvm/, without a mark) for a request to claim it: a
 * command queued to it would run in another caller's DispVM. A VM paused
 * behind our back (virsh suspend) has no mark: the request waits on its
 * channel until the VM is resumed, then runs; a command with a deadline
 * (timeout_ms) ends with "the agent did not answer within N s" and the
 * daemon cancels it; one without waits like any long command (qvm-run's
 * caller may interrupt it). The same holds for a qvm-pause that comes
 * between the mark's check and the request. */
static int dial_running(struct qubes *q, const struct qvm *vm, struct agent_conn *c,
                        struct qerr *err)
{
    char sock[PATH_MAX];
    struct qerr e;
    if (vm->cls == QVM_ADMIN || qvm_get_bool(vm, "preload", false) ||
        qvm_power_paused_mark(&q->cfg, vm->name, NULL))
        return 0;
    if (qrt_vm_path(&q->cfg, vm->name, QRT_QREXEC_SOCK, sock, sizeof sock, err) < 0)
        return -1;
    if (agent_connect(sock, 0, c, &e) == 0)     /* one try, no wait */
        return 1;
    if (e.code == ECONNREFUSED || e.code == ENOENT)
        return 0;               /* no daemon, or one that is gone: halted or starting */
    return qerr_errno(err, e.code, "cannot reach the qrexec-daemon of '%s' at %s", vm->name,
                      sock);
}

/* A pause mark of another run of the domain (the VM halted while paused
 * and started by something that did not clear it) means nothing: dropped,
 * so that the fast path serves the VM again. The mark of this run stays,
 * whatever the state (a qvm-pause may be between its mark and its pause):
 * qvm-unpause clears it. */
static void drop_stale_pause(struct qubes *q, const char *name, enum qvm_power st)
{
    struct vmm_domain d;
    struct qerr e;
    int id;
    if (st == QVM_POWER_PAUSED || !qvm_power_paused_mark(&q->cfg, name, &id) ||
        vmm_domain_info(&q->vmm, name, &d, &e) < 0)
        return;
    free(d.name);
    if (d.id != id)
        qvm_power_clear_paused(&q->cfg, name);
}

/* The slow path: the hypervisor's state decides (the transition table); a
 * halted VM starts (unless no_start), and its agent is waited for. *vm is
 * found again. */
static int reach_by_hypervisor(struct qubes *q, const char *name, struct qvm **vm,
                               const struct qvm_run_opts *o, struct agent_conn *c,
                               struct qerr *err)
{
    enum qvm_power st;
    if (load_and_check(q, name, QOP_RUN, vm, &st, err) < 0)
        return -1;
    drop_stale_pause(q, name, st);
    if ((st == QVM_POWER_HALTED || st == QVM_POWER_CRASHED) && o->no_start)
        return qerr_set(err, "'%s' is not running (%s): start it first, or leave out --no-auto",
                        name, qvm_power_name(st));
    if (st == QVM_POWER_HALTED || st == QVM_POWER_CRASHED) {
        struct qvm_start_opts so = { .wait = true, .progress = o->progress };
        qvm_collection_free(q->coll);
        q->coll = NULL;
        if (qubes_vm_start(q, name, &so, err) < 0 || !(*vm = qubes_find_vm(q, name, err)))
            return -1;
    }
    char sock[PATH_MAX];
    if (qrt_vm_path(&q->cfg, name, QRT_QREXEC_SOCK, sock, sizeof sock, err) < 0)
        return -1;
    return agent_connect(sock, qvm_get_int(*vm, "qrexec_timeout", 60) * 1000L, c, err);
}

static int run_session(const struct qvm *vm, struct agent_conn *c, const struct qvm_run_opts *o,
                       int *status, struct qerr *err)
{
    agent_deadline(c, o->timeout_ms);
    const char *user = o->user ? o->user : qvm_get_attr(vm, "default_user");
    int in = o->pass_io ? 0 : -1, out = o->pass_io ? 1 : -1, errfd = o->pass_io ? 2 : -1;
    if (!user)
        user = "user";
    if (o->local_command)
        return session_with_local(c, user, o, status, err);
    if (o->pass_io && o->fds) {
        in = o->fds[0];
        out = o->fds[1];
        errfd = o->fds[2];
    }
    int rc = session_with(c, user, o, in, out, errfd, status, err);
    agent_close(c);
    return rc;
}

int qubes_vm_run(struct qubes *q, const char *name, const struct qvm_run_opts *o, int *status,
                 struct qerr *err)
{
    struct qvm *vm;
    struct agent_conn c;
    if (qubes_load_for_reading(q, err) < 0 || !(vm = qubes_find_vm(q, name, err)))
        return -1;
    /* Nothing runs offline: not even in a VM whose daemon would answer. */
    if (q->vmm.offline && vmm_require(&q->vmm, err) < 0)
        return qerr_prefix(err, "cannot run anything in '%s'", name);
    int rc = dial_running(q, vm, &c, err);
    if (rc == 0)
        rc = reach_by_hypervisor(q, name, &vm, o, &c, err);
    return rc < 0 ? -1 : run_session(vm, &c, o, status, err);
}

/* ---- root image size ---- */

int qubes_vm_grow_root(struct qubes *q, const char *name, unsigned long long bytes,
                       struct qerr *err)
{
    struct qvm *vm;
    enum qvm_power st;
    char root[PATH_MAX];
    if (qubes_load_for_reading(q, err) < 0 || !(vm = qubes_find_vm(q, name, err)))
        return -1;
    if (vm->cls == QVM_ADMIN || vm->cls == QVM_DISP)
        return qerr_set(err, "'%s' has no root image of its own", name);
    if (vm->template_qid >= 0)
        return qerr_set(err, "'%s' uses its template's root image: resize the template instead",
                        name);
    if (qubes_vm_state(q, vm, &st, err) < 0)
        return -1;
    if (qvm_power_is_running(st))
        return qerr_set(err, "'%s' is %s: shut it down first", name, qvm_power_name(st));
    /* A running child reads the template's root as its backing file. */
    cleanup_close int lock = start_lock(q, err);
    if (lock < 0)
        return -1;
    if (qvm_class_is_template(vm->cls) && qubes_template_exclusion(q, vm, err) < 0)
        return qerr_set(err, "Cannot resize the root image of template '%s' while VMs based on "
                        "it are running", name);
    struct stat sb;
    if (qubes_vm_image(q, vm, "root_img", "root.img", root, sizeof root, err) < 0)
        return -1;
    if (stat(root, &sb) < 0)
        return qerr_errno(err, errno, "%s", root);
    if ((unsigned long long)sb.st_size > bytes)
        return qerr_set(err, "%s is %llu bytes: shrinking to %llu would lose data", root,
                        (unsigned long long)sb.st_size, bytes);
    if (truncate(root, (off_t)bytes) < 0)
        return qerr_errno(err, errno, "cannot grow %s", root);
    return 0;
}
