#include "prepare.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../orchestrator/agent_client.h"
#include "../orchestrator/lifecycle.h"
#include "../orchestrator/runtime.h"
#include "../orchestrator/util.h"
#include "../storage/storage.h"
#include "remote.h"
#include "shmem.h"

/* What a savefile depends on: the template's root image and kernel, and
 * the network T-dvm was on (its NIC is in the saved domain). */
static int source_stamp(struct qubes *q, const struct dispvm_template *t, char *out, size_t len,
                        struct qerr *err)
{
    const struct qvm *tpl = dispvm_template_vm(q->coll, t), *dv = dispvm_dvm_vm(q->coll, t);
    struct qnet net = { .netid = -1 };
    char dir[PATH_MAX], root[PATH_MAX + 16], kernel[PATH_MAX + 32];
    struct stat r, k;
    if (!tpl)
        return qerr_set(err, "the template '%s' is gone", t->name);
    if (qvm_host(tpl)) {
        /* On its host: its volumes there, as that host's daemon sees them. */
        char rs[160], ks[160] = "none";
        struct vmm *vmm = qubes_vmm_of(q, tpl, err);
        char rv[QHOST_VOLUME_NAME_MAX], kv[QHOST_VOLUME_NAME_MAX];
        if (!vmm || qhost_volume_name(tpl->name, "root.img", rv, sizeof rv, err) < 0 ||
            qhost_volume_name(tpl->name, "vmlinuz", kv, sizeof kv, err) < 0)
            return -1;
        int rc = vmm_volume_stamp(vmm, QHOST_POOL, rv, rs, sizeof rs, err);
        if (rc <= 0)
            return rc < 0 ? -1 : qerr_set(err, "'%s' has no root image on host '%s'", tpl->name,
                                          qvm_host(tpl));
        if (vmm_volume_stamp(vmm, QHOST_POOL, kv, ks, sizeof ks, err) < 0)
            return -1;
        snprintf(out, len, "host %s root %s kernel %s net -1\n", qvm_host(tpl), rs, ks);
        return 0;
    }
    if ((dv && qnet_of_vm(q->coll, dv, &net, err) < 0) ||
        qubes_vm_dir(q, tpl, dir, sizeof dir, err) < 0)
        return -1;
    snprintf(root, sizeof root, "%s/root.img", dir);
    snprintf(kernel, sizeof kernel, "%s/kernel/vmlinuz", dir);
    if (stat(root, &r) < 0)
        return qerr_errno(err, errno, "template root image %s", root);
    if (stat(kernel, &k) < 0)
        memset(&k, 0, sizeof k);
    snprintf(out, len, "root %lu:%lu %lld %lld.%09ld kernel %lld %lld.%09ld net %d\n",
             (unsigned long)r.st_dev, (unsigned long)r.st_ino, (long long)r.st_size,
             (long long)r.st_mtim.tv_sec, r.st_mtim.tv_nsec, (long long)k.st_size,
             (long long)k.st_mtim.tv_sec, k.st_mtim.tv_nsec, net.on ? net.netid : -1);
    return 0;
}

int dispvm_set_usable(struct qubes *q, const struct dispvm_template *t, bool *usable, char *why,
                      size_t whylen, struct qerr *err)
{
    char was[512], now[512];
    *usable = false;
    if (t->host[0] && (access(t->set.gen, R_OK) < 0 || access(t->set.header, R_OK) < 0)) {
        snprintf(why, whylen, "there is no savefile of '%s' on host '%s'", t->name, t->host);
        return 0;
    }
    if (!t->host[0] && access(t->set.savefile, R_OK) < 0) {
        snprintf(why, whylen, "there is no savefile %s", t->set.savefile);
        return 0;
    }
    if (qread_small(t->set.meta, was, sizeof was) < 0) {
        snprintf(why, whylen, "%s is missing", t->set.meta);
        return 0;
    }
    if (source_stamp(q, t, now, sizeof now, err) < 0)
        return -1;
    if (strcmp(was, now) != 0) {
        snprintf(why, whylen, "the template '%s' (root image or kernel) or the network of "
                 "'%s' changed since the savefile was made", t->name, t->dvm);
        return 0;
    }
    *usable = true;
    return 0;
}

/* ---- making the set, in the order it happens ---- */

/* T-dvm, created once: internal, gray, one vCPU, based on T. */
static int ensure_dvm_vm(struct qubes *q, struct dispvm_template *t, FILE *progress,
                         struct qerr *err)
{
    if (qubes_load_for_writing(q, false, err) < 0)
        return -1;
    int rc = QUBES_UNCHANGED;
    if (!qvm_collection_by_name(q->coll, t->dvm)) {
        struct qvm_create_opts o = {
            .name = t->dvm, .label = "gray", .template = t->name,
            .hvm = t->hvm, .internal = true, .vcpus = 1, .host = t->host[0] ? t->host : NULL,
        };
        struct qvm *vm;
        qsay(progress, "--> Creating the DispVM template '%s'%s%s", t->dvm,
             t->host[0] ? " on host " : "", t->host);
        /* A creation saves (and unlocks) itself: then nothing is left to do. */
        if ((rc = qubes_vm_create(q, &o, &vm, err)) == 0)
            rc = QUBES_UNCHANGED;
    }
    const struct qvm *dv = qvm_collection_by_name(q->coll, t->dvm);
    t->dvm_qid = dv ? dv->qid : -1;
    t->dvm_netvm_qid = dv ? dv->netvm_qid : -1;
    return qubes_commit(q, rc, err);
}

/* Whether the new savefile keeps memory shared: the global setting
 * dispvm-memory (auto, shared, full); auto and shared need a backend that
 * can. Says which. */
static int choose_memory(struct qubes *q, const struct dispvm_template *t, bool *shared,
                         FILE *progress, struct qerr *err)
{
    const char *want = qattrs_get(&q->coll->root_attrs, "dispvm_memory");
    if (!want)
        want = "auto";
    if (t->host[0]) {
        *shared = false;
        if (strcmp(want, "shared") == 0)
            return qerr_set(err, "dispvm-memory is shared, but DispVMs on host '%s' restore a "
                            "full memory image (no shared memory there yet)", t->host);
        qsay(progress, "--> DispVM memory: full memory image (on host %s)", t->host);
        return 0;
    }
    if (strcmp(want, "full") == 0) {
        *shared = false;
        qsay(progress, "--> DispVM memory: full memory image (dispvm-memory is full)");
        return 0;
    }
    bool can = vmm_shares_memory(&q->vmm) == 1 && access(QRT_SHM_PARENT, W_OK) == 0;
    if (!can && strcmp(want, "shared") == 0)
        return qerr_set(err, "dispvm-memory is shared, but the %s hypervisor connection "
                        "cannot share a DispVM's memory (QEMU through libvirt and a writable "
                        QRT_SHM_PARENT " are needed)", q->vmm.uri);
    *shared = can;
    if (can)
        qsay(progress, "--> DispVM memory: shared memory (guest RAM in %s, copy-on-write in "
             "DispVMs)", QRT_SHM_DIR);
    else
        qsay(progress, "--> DispVM memory: full memory image (the %s connection cannot share "
             "memory)", q->vmm.uri);
    return 0;
}

/* Shrinks T-dvm to what its guest uses (and a margin) with the balloon
 * before the save: the memory handed back is not saved. Best effort: a
 * guest without a balloon driver is saved as it is. */
static void shrink_memory(struct qubes *q, struct vmm *vmm, const char *dvm, FILE *progress)
{
    char sock[PATH_MAX], used[64] = "";
    struct agent_conn c;
    struct qerr e;
    int out[2], st;
    if (qrt_vm_path(&q->cfg, dvm, QRT_QREXEC_SOCK, sock, sizeof sock, NULL) < 0 || pipe(out) < 0)
        return;
    cleanup_close int rd = out[0], wr = out[1];
    if (agent_connect(sock, 5000, &c, &e) == 0) {
        agent_exec(&c, "root", "awk '/^MemTotal:/ {t = $2} /^MemAvailable:/ {a = $2} "
                   "END {print t - a}' /proc/meminfo", -1, wr, -1, &st, &e);
        agent_close(&c);
    }
    qclose(&wr);
    ssize_t n = read(rd, used, sizeof used - 1);
    if (n <= 0)
        return;
    used[n] = '\0';
    unsigned long kib = strtoul(used, NULL, 10);
    if (kib == 0)
        return;
    kib += 96 * 1024;           /* room for the service the DispVM will run */
    if (kib < 160 * 1024)
        kib = 160 * 1024;
    struct vmm_domain d;
    if (vmm_domain_info(vmm, dvm, &d, &e) < 0)
        return;
    free(d.name);
    if (kib >= d.mem_kib)
        return;
    qsay(progress, "--> Shrinking '%s' from %lu to %lu MiB (its guest uses %lu MiB)", dvm,
         d.mem_kib / 1024, kib / 1024, strtoul(used, NULL, 10) / 1024);
    if (vmm_set_memory(vmm, dvm, kib, &e) < 0) {
        qsay(progress, "warning: %s", e.msg);
        return;
    }
    /* Give the balloon time to inflate. */
    for (int i = 0; i < 30; i++) {
        usleep(100000);
        if (vmm_domain_info(vmm, dvm, &d, &e) < 0)
            return;
        free(d.name);
        if (d.mem_kib <= kib + 1024)
            break;
    }
}

/* The new set, written beside the old one. */
struct new_set {
    char save[PATH_MAX + 8], root[PATH_MAX + 8], priv[PATH_MAX + 8];
    char root_layer[PATH_MAX + 8], priv_layer[PATH_MAX + 8];
};

static void new_set_paths(const struct dvmdata *set, struct new_set *n)
{
    snprintf(n->save, sizeof n->save, "%s.tmp", set->savefile);
    snprintf(n->root, sizeof n->root, "%s.tmp", set->root);
    snprintf(n->priv, sizeof n->priv, "%s.tmp", set->priv);
    snprintf(n->root_layer, sizeof n->root_layer, "%s.tmp", set->root_layer);
    snprintf(n->priv_layer, sizeof n->priv_layer, "%s.tmp", set->priv_layer);
}

static void new_set_remove(const struct new_set *n)
{
    unlink(n->save);
    unlink(n->root);
    unlink(n->priv);
    unlink(n->root_layer);
    unlink(n->priv_layer);
}

/* An empty layer over a disk of the new set, named for the place that
 * disk will have: each DispVM's own layer starts as a copy of it. */
static int empty_layer(const char *disk, const char *fmt, const char *final, const char *layer,
                       struct qerr *err)
{
    if (storage_create_layer(disk, fmt, layer, err) < 0 ||
        storage_rebase_layer(layer, final, fmt, err) < 0)
        return qerr_prefix(err, "the empty layer %s", layer);
    return 0;
}

/* Saves the running T-dvm into the new set: the domain stops, and its disks
 * are then the state its memory expects. */
static int save_set(struct qubes *q, const struct dispvm_template *t, bool shared,
                    const struct new_set *n, FILE *progress, struct qerr *err)
{
    const struct qvm *vm = dispvm_dvm_vm(q->coll, t);
    char dir[PATH_MAX], src[PATH_MAX + 32];
    if (!vm)
        return qerr_set(err, "'%s' is gone", t->dvm);
    if (qubes_vm_dir(q, vm, dir, sizeof dir, err) < 0 || qmkdirs(t->set.dir, err) < 0)
        return -1;
    new_set_remove(n);
    qsay(progress, "--> Saving '%s' to %s", t->dvm, t->set.savefile);
    if ((shared ? vmm_save_device_state(&q->vmm, t->dvm, n->save, err)
                : vmm_save(&q->vmm, t->dvm, n->save, err)) < 0)
        return -1;
    snprintf(src, sizeof src, "%s/volatile.img", dir);
    if (storage_copy_sparse(src, n->root, err) < 0)
        return -1;
    snprintf(src, sizeof src, "%s/private.img", dir);
    if (storage_copy_sparse(src, n->priv, err) < 0)
        return -1;
    return empty_layer(n->root, "qcow2", t->set.root, n->root_layer, err) < 0 ||
                   empty_layer(n->priv, "raw", t->set.priv, n->priv_layer, err) < 0
               ? -1 : 0;
}

/* Replaces the set together, with its stamp, once no restore is between
 * reading the old one and its QEMU opening the files (they hold the set's
 * lock shared until then); the previous savefile's RAM file goes unless
 * DispVMs still map it. */
static int install_set(struct qubes *q, const struct dispvm_template *t, const struct new_set *n,
                       const char *stamp, struct qerr *err)
{
    cleanup_close int set_lock = dvmdata_lock(&t->set, true, err);
    if (set_lock < 0)
        return -1;
    /* The copy of the old savefile in shared memory is not read any more:
     * its memory file may go below, and its disks are replaced here. */
    dvmdata_unpublish_shm(&t->set, false);
    if (rename(n->root, t->set.root) < 0 || rename(n->priv, t->set.priv) < 0 ||
        rename(n->root_layer, t->set.root_layer) < 0 ||
        rename(n->priv_layer, t->set.priv_layer) < 0 || rename(n->save, t->set.savefile) < 0)
        return qerr_errno(err, errno, "cannot put %s in place", t->set.savefile);
    if (qwrite_file_atomic(t->set.meta, stamp, strlen(stamp), 0644, err) < 0)
        return -1;
    dispvm_ram_gc(&q->cfg, t->dvm, t->set.savefile, false);
    return 0;
}

static void relink(const char *target, const char *link, FILE *progress)
{
    unlink(link);
    if (symlink(target, link) < 0)
        qsay(progress, "warning: cannot link %s", link);
}

/* The original's links, and the copy in shared memory (best effort). */
static void publish_set(struct qubes *q, const struct dispvm_template *t, FILE *progress)
{
    char link[PATH_MAX], dir[PATH_MAX], root[PATH_MAX + 16];
    const struct qvm *tpl = dispvm_template_vm(q->coll, t);
    if (dvmdata_path(&q->cfg, DVMDATA_DEFAULT_SAVEFILE, link, sizeof link, NULL) == 0)
        relink(t->set.savefile, link, progress);
    if (tpl && qubes_vm_dir(q, tpl, dir, sizeof dir, NULL) == 0 &&
        dvmdata_path(&q->cfg, DVMDATA_SAVEFILE_ROOT, link, sizeof link, NULL) == 0) {
        snprintf(root, sizeof root, "%s/root.img", dir);
        relink(root, link, progress);
    }
    struct qerr e;
    if (dvmdata_path(&q->cfg, DVMDATA_NO_SHM, link, sizeof link, NULL) < 0 ||
        access(link, F_OK) == 0 || access(QRT_SHM_PARENT, W_OK) != 0) {
        dvmdata_unpublish_shm(&t->set, true);       /* the old set's copy */
        return;
    }
    if (dvmdata_publish_shm(&t->set, &e) < 0)
        qsay(progress, "warning: %s", e.msg);
}

/* A set on another host: saved there, installed here (dispvm/remote.h). */
static int save_and_install_remote(struct vmm *vmm, struct dispvm_template *t,
                                   const char *stamp, FILE *progress, struct qerr *err)
{
    struct dispvm_remote_set n;
    void *header = NULL;
    size_t hlen = 0;
    if (dispvm_remote_save(vmm, t, &n, &header, &hlen, progress, err) < 0)
        return -1;
    int rc = dispvm_remote_install(vmm, t, &n, header, hlen, stamp, err);
    free(header);
    if (rc < 0)
        dispvm_remote_discard(vmm, &n);
    else
        qsay(progress, "--> Savefile ready on host %s: volume %s of pool %s (memory and "
             "device state)", t->host, n.savefile, QHOST_POOL);
    return rc;
}

int dispvm_set_make(struct qubes *q, struct dispvm_template *t, FILE *progress,
                    struct qerr *err)
{
    bool shared = false;
    char ram[PATH_MAX] = "", stamp[512];
    struct new_set n;
    new_set_paths(&t->set, &n);
    struct vmm *vmm = dispvm_template_vmm(q, t, err);
    if (!vmm || ensure_dvm_vm(q, t, progress, err) < 0 ||
        choose_memory(q, t, &shared, progress, err) < 0)
        return -1;
    if (shared && dispvm_ram_create(t->dvm, ram, sizeof ram, err) < 0)
        return -1;
    struct qvm_start_opts so = { .wait = true, .progress = progress,
                                 .mem_file = shared ? ram : NULL };
    qsay(progress, "--> Booting '%s' to save it warmed up", t->dvm);
    if (qubes_vm_start(q, t->dvm, &so, err) < 0) {
        if (ram[0])
            unlink(ram);
        return -1;
    }
    /* The guest flushes its caches first: the disk snapshot must hold what
     * the saved memory believes is on disk. */
    struct qvm_run_opts ro = { .command = "sync" };
    int status;
    int rc = source_stamp(q, t, stamp, sizeof stamp, err);
    if (rc == 0)
        rc = qubes_vm_run(q, t->dvm, &ro, &status, err);
    if (rc == 0)
        shrink_memory(q, vmm, t->dvm, progress);
    if (rc == 0 && t->host[0]) {
        if (save_and_install_remote(vmm, t, stamp, progress, err) < 0) {
            vmm_destroy(vmm, t->dvm, NULL);
            return qerr_prefix(err, "cannot prepare the DispVM savefile of '%s' on host '%s'",
                               t->name, t->host);
        }
        return 0;
    }
    if (rc == 0)
        rc = save_set(q, t, shared, &n, progress, err);
    if (rc == 0)
        rc = install_set(q, t, &n, stamp, err);
    if (rc < 0) {
        new_set_remove(&n);
        vmm_destroy(vmm, t->dvm, NULL);
        if (ram[0])
            unlink(ram);
        return qerr_prefix(err, "cannot prepare the DispVM savefile of '%s'", t->name);
    }
    publish_set(q, t, progress);
    struct stat st;
    stat(t->set.savefile, &st);
    qsay(progress, "--> Savefile ready: %s (%lld KiB, %s)", t->set.savefile,
         (long long)st.st_size >> 10, shared ? "device state; memory shared" : "memory and device state");
    return 0;
}
