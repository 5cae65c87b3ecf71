#include "dispvm.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../orchestrator/agent_client.h"
#include "../orchestrator/firewall.h"
#include "../orchestrator/lifecycle.h"
#include "../orchestrator/monitor.h"
#include "../orchestrator/net.h"
#include "../orchestrator/util.h"
#include "../storage/storage.h"
#include "savefile.h"
#include "shmem.h"

extern char **environ;

/* $BASE/dvmdata/<dvm>.<what> */
static void dvm_path(const struct qubes *q, const char *dvm, const char *what, char *out,
                     size_t len)
{
    snprintf(out, len, "%s/dvmdata/%s.%s", q->cfg.base_dir, dvm, what);
}

static int dvm_name(const char *tpl, char *out, size_t len, struct qerr *err)
{
    if (snprintf(out, len, "%s-dvm", tpl) >= (int)len || strlen(out) > QUBES_NAME_MAX)
        return qerr_set(err, "template name '%s' is too long for its '-dvm' VM", tpl);
    return 0;
}

static struct qvm *template_of(struct qubes *q, const char *name, struct qerr *err)
{
    struct qvm *tpl;
    if (name) {
        tpl = qubes_find_vm(q, name, err);
    } else {
        int qid = q->coll->globals[QG_DEFAULT_TEMPLATE];
        tpl = qid >= 0 ? qvm_collection_by_qid(q->coll, qid) : NULL;
        if (!tpl)
            qerr_set(err, "no default template: name one (qubes-prefs default-template)");
    }
    if (tpl && !qvm_class_is_template(tpl->cls)) {
        qerr_set(err, "'%s' is a %s, not a template", tpl->name, qvm_class_label(tpl->cls));
        return NULL;
    }
    return tpl;
}

/* What the savefile was made from: the template's root image and kernel. */
/* What a savefile depends on: the template's root image and kernel, and
 * the network the dvm VM was on (its NIC is in the saved domain). */
static int source_stamp(struct qubes *q, const struct qvm *tpl, const char *dvm, char *out,
                        size_t len, struct qerr *err)
{
    const struct qvm *dv = qvm_collection_by_name(q->coll, dvm);
    struct qnet net = { .netid = -1 };
    if (dv && qnet_of_vm(q->coll, dv, &net, err) < 0)
        return -1;
    char dir[PATH_MAX], root[PATH_MAX + 16], kernel[PATH_MAX + 32];
    struct stat r, k;
    if (qubes_vm_dir(q, tpl, dir, sizeof dir, err) < 0)
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

static int read_small(const char *path, char *out, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, out, len - 1);
    close(fd);
    if (n < 0)
        return -1;
    out[n] = '\0';
    return 0;
}

static int write_small(const char *path, const char *text, struct qerr *err)
{
    return qwrite_file_atomic(path, text, strlen(text), 0644, err);
}

int dispvm_savefile_state(struct qubes *q, const char *template_name, bool *usable,
                          char *why, size_t whylen, struct qerr *err)
{
    char dvm[64], save[PATH_MAX], meta[PATH_MAX], was[512], now[512];
    struct qvm *tpl = template_of(q, template_name, err);
    if (!tpl || dvm_name(tpl->name, dvm, sizeof dvm, err) < 0)
        return -1;
    dvm_path(q, dvm, "savefile", save, sizeof save);
    dvm_path(q, dvm, "meta", meta, sizeof meta);
    *usable = false;
    if (access(save, R_OK) < 0) {
        snprintf(why, whylen, "there is no savefile %s", save);
        return 0;
    }
    if (read_small(meta, was, sizeof was) < 0) {
        snprintf(why, whylen, "%s is missing", meta);
        return 0;
    }
    if (source_stamp(q, tpl, dvm, now, sizeof now, err) < 0)
        return -1;
    if (strcmp(was, now) != 0) {
        snprintf(why, whylen, "the template '%s' (root image or kernel) or the network of "
                 "'%s' changed since the savefile was made", tpl->name, dvm);
        return 0;
    }
    *usable = true;
    return 0;
}

/* ---- preparation ---- */

static int global_lock(const struct qubes *q, struct qerr *err)
{
    return qflock(q->cfg.run_dir, "qfile-daemon-dvm.lock", err);
}

/* Takes the template by name: loading for writing replaces the collection. */
static int ensure_dvm_vm(struct qubes *q, const char *tname, bool hvm, const char *dvm,
                         FILE *progress, struct qerr *err)
{
    if (qubes_load_for_writing(q, false, err) < 0)
        return -1;
    if (qvm_collection_by_name(q->coll, dvm)) {
        qubes_unlock(q);
        return 0;
    }
    struct qvm_create_opts o = {
        .name = dvm, .label = "gray", .template = tname,
        .hvm = hvm, .internal = true, .vcpus = 1,
    };
    struct qvm *vm;
    qsay(progress, "--> Creating the DispVM template '%s'", dvm);
    if (qubes_vm_create(q, &o, &vm, err) < 0) {
        qubes_unlock(q);
        return -1;
    }
    return 0;
}

static int drop_preloads(struct qubes *q, const char *tname, struct qerr *err);

/* Shrinks the VM to what its guest uses (and a margin) with the balloon
 * before the save: the memory handed back is not saved. Best effort: a
 * guest without a balloon driver is saved as it is. */
static void shrink_memory(struct qubes *q, const char *dvm, FILE *progress)
{
    char sock[PATH_MAX], used[64] = "";
    struct agent_conn c;
    struct qerr e;
    snprintf(sock, sizeof sock, "%s/vms/%s/agent.sock", q->cfg.run_dir, dvm);
    int out[2], st;
    if (pipe(out) < 0)
        return;
    if (agent_connect(sock, 5000, &c, &e) == 0) {
        agent_exec(&c, "root", "awk '/^MemTotal:/ {t = $2} /^MemAvailable:/ {a = $2} "
                   "END {print t - a}' /proc/meminfo", -1, out[1], -1, &st, &e);
        agent_close(&c);
    }
    close(out[1]);
    ssize_t n = read(out[0], used, sizeof used - 1);
    close(out[0]);
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
    if (vmm_domain_info(&q->vmm, dvm, &d, &e) < 0)
        return;
    free(d.name);
    if (kib >= d.mem_kib)
        return;
    qsay(progress, "--> Shrinking '%s' from %lu to %lu MiB (its guest uses %lu MiB)", dvm,
        d.mem_kib / 1024, kib / 1024, strtoul(used, NULL, 10) / 1024);
    if (vmm_set_memory(&q->vmm, dvm, kib, &e) < 0) {
        qsay(progress, "warning: %s", e.msg);
        return;
    }
    /* Give the balloon time to inflate. */
    for (int i = 0; i < 30; i++) {
        usleep(100000);
        if (vmm_domain_info(&q->vmm, dvm, &d, &e) < 0)
            return;
        free(d.name);
        if (d.mem_kib <= kib + 1024)
            break;
    }
}

int dispvm_prepare(struct qubes *q, const char *template_name, FILE *progress,
                   struct qerr *err)
{
    char dvm[64], dir[PATH_MAX], save[PATH_MAX], save_tmp[PATH_MAX + 8], root[PATH_MAX],
        root_tmp[PATH_MAX + 8], priv[PATH_MAX], priv_tmp[PATH_MAX + 8], meta[PATH_MAX],
        stamp[512], src[PATH_MAX + 32], ddir[PATH_MAX];
    if (qubes_load_for_reading(q, err) < 0)
        return -1;
    struct qvm *tpl = template_of(q, template_name, err);
    if (!tpl || dvm_name(tpl->name, dvm, sizeof dvm, err) < 0)
        return -1;
    char tname[QUBES_NAME_MAX + 1];
    snprintf(tname, sizeof tname, "%s", tpl->name);
    if (ensure_dvm_vm(q, tname, tpl->cls == QVM_TEMPLATE_HVM, dvm, progress, err) < 0)
        return -1;

    bool shared;
    char why[PATH_MAX], ram[PATH_MAX] = "";
    if (dispvm_memory_shared(q, &shared, why, sizeof why, err) < 0)
        return -1;
    qsay(progress, "--> DispVM memory: %s", why);
    if (shared) {
        mkdir(DISPVM_RAM_DIR, 0755);
        dispvm_ram_new(dvm, ram, sizeof ram);
    }
    struct qvm_start_opts so = { .wait = true, .progress = progress,
                                 .mem_file = shared ? ram : NULL };
    qsay(progress, "--> Booting '%s' to save it warmed up", dvm);
    if (qubes_vm_start(q, dvm, &so, err) < 0) {
        if (shared)
            unlink(ram);
        return -1;
    }
    struct qvm *vm = qubes_find_vm(q, dvm, err);
    tpl = vm ? qubes_find_vm(q, tname, err) : NULL;
    if (!tpl)
        return -1;
    if (source_stamp(q, tpl, dvm, stamp, sizeof stamp, err) < 0)
        goto kill;
    /* The guest flushes its caches first: the disk snapshot must hold what
     * the saved memory believes is on disk. */
    struct qvm_run_opts ro = { .command = "sync" };
    int status;
    if (qubes_vm_run(q, dvm, &ro, &status, err) < 0)
        goto kill;
    shrink_memory(q, dvm, progress);
    vm = qubes_find_vm(q, dvm, err);
    if (!vm || qubes_vm_dir(q, vm, dir, sizeof dir, err) < 0)
        goto kill;
    snprintf(ddir, sizeof ddir, "%s/dvmdata", q->cfg.base_dir);
    if (qmkdirs(ddir, err) < 0)
        goto kill;
    dvm_path(q, dvm, "savefile", save, sizeof save);
    dvm_path(q, dvm, "root.qcow2", root, sizeof root);
    dvm_path(q, dvm, "private.img", priv, sizeof priv);
    dvm_path(q, dvm, "meta", meta, sizeof meta);
    snprintf(save_tmp, sizeof save_tmp, "%s.tmp", save);
    snprintf(root_tmp, sizeof root_tmp, "%s.tmp", root);
    snprintf(priv_tmp, sizeof priv_tmp, "%s.tmp", priv);
    unlink(save_tmp);
    unlink(root_tmp);
    unlink(priv_tmp);

    qsay(progress, "--> Saving '%s' to %s", dvm, save);
    if ((shared ? vmm_save_device_state(&q->vmm, dvm, save_tmp, err)
                : vmm_save(&q->vmm, dvm, save_tmp, err)) < 0)
        goto fail;
    /* The domain has stopped: its disks are the state the memory expects. */
    snprintf(src, sizeof src, "%s/volatile.img", dir);
    if (storage_copy_sparse(src, root_tmp, err) < 0)
        goto fail;
    snprintf(src, sizeof src, "%s/private.img", dir);
    if (storage_copy_sparse(src, priv_tmp, err) < 0)
        goto fail;

    int lock = global_lock(q, err);
    if (lock < 0)
        goto fail;
    /* Replace the set together, under the lock restores take. */
    int rc = rename(root_tmp, root) == 0 && rename(priv_tmp, priv) == 0 &&
             rename(save_tmp, save) == 0 ? 0 : qerr_errno(err, errno, "cannot put %s in place", save);
    if (rc == 0)
        rc = write_small(meta, stamp, err);
    /* The previous savefile's RAM file, unless DispVMs still map it. */
    if (rc == 0)
        dispvm_ram_gc(q, dvm, false);
    close(lock);
    if (rc < 0)
        goto fail;

    /* The original's links and the shared-memory copy. */
    char link[PATH_MAX], tplroot[PATH_MAX], tdir[PATH_MAX];
    snprintf(link, sizeof link, "%s/default-savefile", ddir);
    unlink(link);
    if (symlink(save, link) < 0)
        qsay(progress, "warning: cannot link %s", link);
    tpl = qubes_find_vm(q, tname, NULL);
    if (tpl && qubes_vm_dir(q, tpl, tdir, sizeof tdir, NULL) == 0) {
        snprintf(tplroot, sizeof tplroot, "%s/root.img", tdir);
        snprintf(link, sizeof link, "%s/savefile-root", ddir);
        unlink(link);
        if (symlink(tplroot, link) < 0)
            qsay(progress, "warning: cannot link %s", link);
    }
    snprintf(link, sizeof link, "%s/dont-use-shm", ddir);
    if (access(link, F_OK) != 0 && access("/dev/shm", W_OK) == 0) {
        char shm[PATH_MAX];
        snprintf(shm, sizeof shm, "/dev/shm/qubes");
        mkdir(shm, 0755);
        snprintf(shm, sizeof shm, "/dev/shm/qubes/%s.savefile", dvm);
        char shm_tmp[PATH_MAX + 8];
        snprintf(shm_tmp, sizeof shm_tmp, "%s.tmp", shm);
        unlink(shm_tmp);
        if (storage_copy_sparse(save, shm_tmp, NULL) == 0 && rename(shm_tmp, shm) == 0) {
            snprintf(link, sizeof link, "/dev/shm/qubes/current-savefile");
            unlink(link);
            if (symlink(shm, link) < 0)
                qsay(progress, "warning: cannot link %s", link);
        } else {
            unlink(shm_tmp);
        }
    }
    struct stat st;
    stat(save, &st);
    qsay(progress, "--> Savefile ready: %s (%lld KiB, %s)", save, (long long)st.st_size >> 10,
         shared ? "device state; memory shared" : "memory and device state");
    /* Preloads restored from the old savefile go; new ones come. */
    if (drop_preloads(q, tname, err) < 0 || dispvm_preload_fill(q, tname, progress, err) < 0)
        return qerr_prefix(err, "the savefile is ready, but preloading failed");
    return 0;
fail:
    unlink(save_tmp);
    unlink(root_tmp);
    unlink(priv_tmp);
kill:
    vmm_destroy(&q->vmm, dvm, NULL);
    if (ram[0])
        unlink(ram);
    return qerr_prefix(err, "cannot prepare the DispVM savefile of '%s'", tname);
}

/* ---- running a DispVM ---- */

#define MAX_DISPID 253

/* The next dispid, from a counter file under its own lock. */
static int next_dispid(const struct qubes *q, struct qerr *err)
{
    char path[PATH_MAX], text[32] = "";
    snprintf(path, sizeof path, "%s/dvmdata/dispid", q->cfg.base_dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return qerr_errno(err, errno, "cannot open %s", path);
    while (flock(fd, LOCK_EX) < 0 && errno == EINTR)
        ;
    ssize_t n = pread(fd, text, sizeof text - 1, 0);
    /* 1..253, in turn: a DispVM's MAC ends in its dispid and its address
     * is .(dispid % 254 + 1), so that no two running ones share either
     * and none takes the gateway's .1. */
    int id = n > 0 ? atoi(text) : 0;
    id = id > 0 && id < MAX_DISPID ? id + 1 : 1;
    int len = snprintf(text, sizeof text, "%d\n", id);
    if (pwrite(fd, text, (size_t)len, 0) != len || ftruncate(fd, len) < 0) {
        close(fd);
        return qerr_errno(err, errno, "cannot update %s", path);
    }
    close(fd);
    return id;
}

/* A process, told apart from a later one with its pid: "PID STARTTIME". */
static int process_id(pid_t pid, char *out, size_t len)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    if (read_small(path, buf, sizeof buf) < 0)
        return -1;
    const char *p = strrchr(buf, ')');   /* the command name may hold spaces */
    unsigned long long start = 0;
    for (int field = 2; p && *p; p++) {
        if (*p == ' ' && ++field == 22) {
            start = strtoull(p + 1, NULL, 10);
            break;
        }
    }
    snprintf(out, len, "%d %llu\n", (int)pid, start);
    return 0;
}

/* Preloads belong to the pool, not to a process. */
#define PRELOAD_OWNER "preload\n"

static bool owner_alive(const char *rundir)
{
    char path[PATH_MAX + 16], rec[64], now[64];
    snprintf(path, sizeof path, "%s/owner", rundir);
    if (read_small(path, rec, sizeof rec) < 0)
        return false;
    if (strcmp(rec, PRELOAD_OWNER) == 0)
        return true;
    return process_id((pid_t)atoi(rec), now, sizeof now) == 0 && strcmp(rec, now) == 0;
}

struct dispvm {
    char name[32];
    char rundir[PATH_MAX];
    bool domain, record;
    struct qnet net;
};

static void remove_runtime(const char *rundir)
{
    storage_remove_tree(rundir, NULL);
}

/* Destroys the domain, removes the record and the files: whatever exists. */
static int teardown(struct qubes *q, struct dispvm *d, struct qerr *err)
{
    int rc = 0;
    struct qerr e2;
    if (d->domain) {
        struct vmm_domain info;
        if (vmm_domain_info(&q->vmm, d->name, &info, &e2) == 0 && info.state != QVM_POWER_HALTED &&
            vmm_kill_or_destroy(&q->vmm, d->name, err) < 0)
            rc = -1;
        free(info.name);
        d->domain = false;
    }
    char ram[PATH_MAX];
    dispvm_ram_recorded(d->rundir, ram, sizeof ram);
    remove_runtime(d->rundir);
    if (ram[0])
        dispvm_ram_release(q, ram);
    if (d->record) {
        if (qubes_load_for_writing(q, false, rc < 0 ? &e2 : err) < 0)
            return -1;
        struct qvm *vm = qvm_collection_by_name(q->coll, d->name);
        if (vm && vm->cls == QVM_DISP) {
            qvm_collection_remove(q->coll, vm);
            qvm_free(vm);
            if (qubes_save_and_unlock(q, rc < 0 ? &e2 : err) < 0)
                return -1;
        } else {
            qubes_unlock(q);
        }
        d->record = false;
    }
    return rc;
}

static int make_layer(const char *backing, const char *fmt, const char *layer, struct qerr *err)
{
    char *argv[] = { "qemu-img", "create", "-q", "-f", "qcow2", "-F", (char *)fmt, "-b",
                     (char *)backing, (char *)layer, NULL };
    return qrun_program(argv, err);
}

/* Restores a clone of the savefile with the DispVM's identity: fed through
 * a FIFO (no copy), or, when the restore refuses that, from a copy. */
static int restore_clone(struct qubes *q, const char *from, const char *clone,
                         const struct savefile_identity *id, FILE *progress, struct qerr *err)
{
    struct qerr e;
    const char *feed = getenv("QUBES_DISPVM_FEED");
    pid_t writer = feed && strcmp(feed, "fifo") == 0 ? savefile_feed(from, clone, id, &e) : 0;
    if (writer > 0) {
        int rc = vmm_restore(&q->vmm, clone, &e);
        kill(writer, SIGKILL);      /* finished already, unless the restore failed */
        waitpid(writer, NULL, 0);
        unlink(clone);
        if (rc == 0)
            return 0;
    }
    if (writer < 0 || (writer > 0 && feed))
        qsay(progress, "--> Restoring from a copy (through a pipe: %s)", e.msg);
    if (savefile_clone(from, clone, id, err) < 0)
        return -1;
    int rc = vmm_restore(&q->vmm, clone, err);
    unlink(clone);
    return rc;
}

/* A DispVM's firewall rules are those of the VM that asked for it (of the
 * dvm VM when dom0 asks), written, like every firewall file, under the
 * qubes.xml write lock the caller holds. */
static int inherit_firewall(struct qubes *q, const struct qvm *vm, const struct qvm *from,
                            struct qerr *err)
{
    char src[PATH_MAX], dst[PATH_MAX];
    struct qfw fw;
    qfw_defaults(&fw);
    if (from && (qfw_path(q, from, src, sizeof src, err) < 0 || qfw_load(src, &fw, err) < 0))
        return qerr_prefix(err, "the firewall rules of '%s'", from->name);
    int rc = qfw_path(q, vm, dst, sizeof dst, err) < 0 ? -1 : qfw_write(q, dst, &fw, err);
    qfw_free(&fw);
    return rc;
}

/* A shared-memory savefile: the DispVM maps its RAM file copy-on-write
 * and receives the saved device state; it runs when this returns. */
static int restore_shared(struct qubes *q, const struct savefile_info *si, const char *from,
                          const char *ram, struct savefile_identity *id, struct dispvm *d,
                          struct qerr *err)
{
    if (access(ram, R_OK) < 0)
        return qerr_errno(err, errno, "the savefile's memory file %s", ram);
    if (dispvm_ram_claim(d->rundir, ram, err) < 0)
        return -1;
    id->private_ram = true;
    char *xml = savefile_domain_xml(si->xml, id, err);
    if (!xml)
        return -1;
    /* Mapped shared, the DispVM would write into every other's memory. */
    if (strstr(xml, "share=on")) {
        free(xml);
        return qerr_set(err, "cannot map %s copy-on-write for %s", ram, d->name);
    }
    int rc = vmm_restore_device_state(&q->vmm, xml, from, (long long)si->stream_offset, err);
    free(xml);
    if (rc == 0 && vmm_resume(&q->vmm, d->name, err) < 0) {
        vmm_destroy(&q->vmm, d->name, NULL);
        rc = -1;
    }
    return rc;
}

/* Restores the savefile as the DispVM `d` and records it, under the
 * qubes.xml write lock. */
static int restore(struct qubes *q, const struct dispvm_request *r, int tpl_qid,
                   const char *dvm, bool preload, struct dispvm *d, struct qerr *err)
{
    char save[PATH_MAX], root[PATH_MAX], priv[PATH_MAX], lroot[PATH_MAX + 16],
        lpriv[PATH_MAX + 16], clone[PATH_MAX + 16], sock[PATH_MAX + 16], log[PATH_MAX + 16];
    char uuid[37], num[16];
    dvm_path(q, dvm, "savefile", save, sizeof save);
    dvm_path(q, dvm, "root.qcow2", root, sizeof root);
    dvm_path(q, dvm, "private.img", priv, sizeof priv);
    /* The shared-memory copy, when it is the current one. */
    char shm[PATH_MAX];
    struct stat a, b;
    snprintf(shm, sizeof shm, "/dev/shm/qubes/%s.savefile", dvm);
    const char *from = stat(shm, &a) == 0 && stat(save, &b) == 0 && a.st_size == b.st_size &&
                               a.st_mtime >= b.st_mtime ? shm : save;

    /* Domain names are host-wide: skip a dispid whose name another
     * database (or a leftover) already holds. */
    int dispid;
    for (int tries = 0;; tries++) {
        if ((dispid = next_dispid(q, err)) < 0)
            return -1;
        snprintf(d->name, sizeof d->name, "disp%d", dispid);
        struct vmm_domain info;
        if (vmm_domain_info(&q->vmm, d->name, &info, err) < 0)
            return -1;
        free(info.name);
        if (info.state == QVM_POWER_HALTED)
            break;
        if (tries == MAX_DISPID)
            return qerr_set(err, "no free DispVM name: all of disp1..disp%d are taken", MAX_DISPID);
    }
    snprintf(d->rundir, sizeof d->rundir, "%s/vms/%s", q->cfg.run_dir, d->name);
    if (qmkdirs(d->rundir, err) < 0)
        return -1;
    /* Who owns it: qvm-cleanup-dispvms removes DispVMs whose owner died. */
    char owner[64], opath[PATH_MAX + 16];
    snprintf(opath, sizeof opath, "%s/owner", d->rundir);
    if (preload)
        snprintf(owner, sizeof owner, "%s", PRELOAD_OWNER);
    else if (process_id(getpid(), owner, sizeof owner) < 0)
        return qerr_set(err, "cannot read this process's start time");
    if (write_small(opath, owner, err) < 0)
        return -1;
    snprintf(lroot, sizeof lroot, "%s/root.qcow2", d->rundir);
    snprintf(lpriv, sizeof lpriv, "%s/private.qcow2", d->rundir);
    snprintf(clone, sizeof clone, "%s/savefile", d->rundir);
    snprintf(sock, sizeof sock, "%s/agent.sock", d->rundir);
    snprintf(log, sizeof log, "%s/console.log", d->rundir);
    qubes_new_uuid(uuid);
    /* Each DispVM writes to its own layers over the disks as they were at
     * the save: its memory and its disks agree, and it sees no other's. */
    if (make_layer(root, "qcow2", lroot, err) < 0 || make_layer(priv, "raw", lpriv, err) < 0)
        return -1;
    struct savefile_identity id = {
        .name = d->name, .uuid = uuid, .disks = { lroot, lpriv },
        .formats = { "qcow2", "qcow2" }, .ndisks = 2,
        .agent_socket = sock, .serial_log = log,
    };

    if (qubes_load_for_writing(q, false, err) < 0) {
        unlink(clone);
        return -1;
    }
    int rc = 0;
    struct qvm *src = qvm_collection_by_name(q->coll, r->source);
    const char *label = r->label ? r->label : src && src->label ? src->label->name : "red";
    struct qvm *vm = qvm_new(QVM_DISP);
    int qid = qvm_collection_alloc_qid(q->coll, err);
    if (!vm || qid < 0)
        rc = -1;
    snprintf(num, sizeof num, "%d", qid);
    if (rc == 0 && (qvm_set_attr(vm, "qid", num, err) < 0 ||
                    qvm_set_attr(vm, "name", d->name, err) < 0))
        rc = -1;
    snprintf(num, sizeof num, "%d", dispid);
    if (rc == 0 && qvm_set_attr(vm, "dispid", num, err) < 0)
        rc = -1;
    snprintf(num, sizeof num, "%d", tpl_qid);
    if (rc == 0 && (qvm_set_attr(vm, "template_qid", num, err) < 0 ||
                    qvm_set_attr(vm, "label", label, err) < 0 ||
                    qvm_set_attr(vm, "firewall_conf", "firewall.xml", err) < 0 ||
                    qvm_set_attr(vm, "uuid", uuid, err) < 0))
        rc = -1;
    /* On the network the dvm VM was saved on, with its own MAC and IP. */
    struct qvm *dv = qvm_collection_by_name(q->coll, dvm);
    snprintf(num, sizeof num, "%d", dv ? dv->netvm_qid : -1);
    if (rc == 0 && (qvm_set_attr(vm, "netvm_qid", dv && dv->netvm_qid >= 0 ? num : "none", err) < 0 ||
                    qvm_set_attr(vm, "uses_default_netvm", "False", err) < 0 ||
                    qnet_of_vm(q->coll, vm, &d->net, err) < 0 ||
                    (d->net.on && !vmm_is_test_driver(&q->vmm) && qnet_host_up(&d->net, err) < 0)))
        rc = -1;
    id.mac = d->net.on ? d->net.mac : NULL;
    /* A preload waits, paused and internal, for a request to claim it. */
    if (rc == 0 && preload && (qvm_set_attr(vm, "internal", "True", err) < 0 ||
                               qvm_set_attr(vm, "preload", "True", err) < 0))
        rc = -1;
    if (rc == 0 && qvm_collection_add(q->coll, vm, err) < 0)
        rc = -1;
    else if (rc == 0 && inherit_firewall(q, vm, src ? src : dv, err) < 0)
        rc = -1;
    if (rc < 0) {
        if (vm && qvm_collection_by_name(q->coll, d->name) == vm)
            qvm_collection_remove(q->coll, vm);
        qvm_free(vm);
        qubes_unlock(q);
        unlink(clone);
        return -1;
    }
    struct savefile_info si;
    char ram[PATH_MAX];
    if (savefile_read(from, &si, err) < 0) {
        qubes_unlock(q);
        return -1;
    }
    if (dispvm_ram_of_xml(si.xml, ram, sizeof ram) < 0) {
        savefile_info_free(&si);
        qubes_unlock(q);
        return qerr_set(err, "%s maps a memory file outside %s", from, DISPVM_RAM_DIR);
    }
    qsay(r->progress, "--> Restoring %s from %s (%s)", d->name, from,
         ram[0] ? "shared memory" : "full memory image");
    rc = ram[0] ? restore_shared(q, &si, from, ram, &id, d, err)
                : restore_clone(q, from, clone, &id, r->progress, err);
    savefile_info_free(&si);
    if (rc < 0) {
        qubes_unlock(q);
        return -1;
    }
    d->domain = true;
    unlink(clone);
    /* The savefile was made with the balloon inflated: give the memory back. */
    struct vmm_domain info;
    if (vmm_domain_info(&q->vmm, d->name, &info, err) == 0) {
        struct qvm *tvm = qvm_collection_by_qid(q->coll, tpl_qid);
        unsigned long want = (unsigned long)(tvm ? qvm_get_int(tvm, "memory", 512) : 512) * 1024;
        free(info.name);
        if (info.mem_kib < want)
            vmm_set_memory(&q->vmm, d->name, want, NULL);
        info.mem_kib = want;
    }
    if (qubes_save_and_unlock(q, err) < 0)
        return -1;
    d->record = true;
    if (preload) {
        /* A preload takes its memory back before it is paused (outside the
         * write lock), so that the request claiming it does not wait for
         * the balloon; until paused, no request takes it. */
        unsigned long want = info.mem_kib;
        for (int i = 0; i < 40; i++) {
            usleep(50000);
            if (vmm_domain_info(&q->vmm, d->name, &info, NULL) < 0)
                break;
            free(info.name);
            if (info.mem_kib + 1024 >= want)
                break;
        }
        if (vmm_suspend(&q->vmm, d->name, err) < 0)
            return -1;
    }
    return 0;
}

/* ---- preloaded DispVMs ---- */

static int preload_target(const struct qubes *q)
{
    const char *v = qattrs_get(&q->coll->root_attrs, "dispvm_preload");
    long n;
    return v && qparse_int(v, 0, DISPVM_PRELOAD_MAX, &n) == 0 ? (int)n : 0;
}

static bool is_preload_of(const struct qvm *vm, int tpl_qid)
{
    return vm->cls == QVM_DISP && vm->template_qid == tpl_qid &&
           qvm_get_bool(vm, "preload", false);
}

/* Takes a paused preload of the template, makes it the caller's and resumes
 * it. 0: claimed; 1: none ready (the caller restores one); -1: error. A
 * preload that fails is torn down and never stalls the request. */
static int claim_preload(struct qubes *q, const struct dispvm_request *r, int tpl_qid,
                         struct dispvm *d, struct qerr *err)
{
    char name[32] = "";
    for (struct qvm *vm = q->coll->by_qid; vm; vm = vm->hh_qid.next) {
        enum qvm_power st;
        if (is_preload_of(vm, tpl_qid) && qubes_vm_state(q, vm, &st, NULL) == 0 &&
            st == QVM_POWER_PAUSED) {
            snprintf(name, sizeof name, "%s", vm->name);
            break;
        }
    }
    if (!name[0])
        return 1;
    struct qerr e;
    if (qubes_load_for_writing(q, false, err) < 0)
        return -1;
    struct qvm *vm = qvm_collection_by_name(q->coll, name);
    struct qvm *src = qvm_collection_by_name(q->coll, r->source);
    const char *label = r->label ? r->label : src && src->label ? src->label->name : "red";
    if (!vm || !is_preload_of(vm, tpl_qid)) {
        qubes_unlock(q);
        return 1;
    }
    snprintf(d->name, sizeof d->name, "%s", name);
    snprintf(d->rundir, sizeof d->rundir, "%s/vms/%s", q->cfg.run_dir, name);
    d->domain = d->record = true;
    char owner[64], opath[PATH_MAX + 16];
    snprintf(opath, sizeof opath, "%s/owner", d->rundir);
    qattrs_del(&vm->attrs, "preload");
    if (qvm_set_attr(vm, "internal", "False", &e) < 0 || qvm_set_attr(vm, "label", label, &e) < 0 ||
        (src && inherit_firewall(q, vm, src, &e) < 0) ||
        process_id(getpid(), owner, sizeof owner) < 0 || write_small(opath, owner, &e) < 0 ||
        qubes_save_and_unlock(q, &e) < 0 || vmm_resume(&q->vmm, name, &e) < 0) {
        qubes_unlock(q);
        qsay(r->progress, "--> Preloaded %s failed (%s): restoring one instead", name, e.msg);
        teardown(q, d, &e);
        memset(d, 0, sizeof *d);
        if (qubes_load_for_reading(q, err) < 0)
            return -1;
        return 1;
    }
    qsay(r->progress, "--> Using preloaded %s", name);
    return 0;
}

/* A new DispVM needs this much free host memory (the original asked for
 * 400 MiB); QUBES_DISPVM_MIN_FREE_MIB changes it. A preloaded one has its
 * memory already. */
#define DISPVM_MIN_FREE_MIB 400

static int enough_memory(struct qubes *q, struct qerr *err)
{
    long need = DISPVM_MIN_FREE_MIB;
    const char *env = getenv("QUBES_DISPVM_MIN_FREE_MIB");
    if (env && *env && qparse_int(env, 0, 1L << 40, &need) < 0)
        return qerr_set(err, "QUBES_DISPVM_MIN_FREE_MIB=\"%s\": not a number of MiB", env);
    struct vmm_host host;
    if (vmm_host_info(&q->vmm, &host, err) < 0)
        return -1;
    if ((long long)(host.free_kib / 1024) < need)
        return qerr_set(err, "not enough memory for a DispVM: the host has %llu MiB free, %ld MiB "
                        "are needed (QUBES_DISPVM_MIN_FREE_MIB)", host.free_kib / 1024, need);
    return 0;
}

static int drop_preloads(struct qubes *q, const char *tname, struct qerr *err)
{
    if (qubes_load_for_reading(q, err) < 0)
        return -1;
    struct qvm *tpl = qubes_find_vm(q, tname, err);
    if (!tpl)
        return -1;
    int tpl_qid = tpl->qid;
    char names[DISPVM_PRELOAD_MAX * 4][32];
    int n = 0;
    for (struct qvm *vm = q->coll->by_qid; vm && n < DISPVM_PRELOAD_MAX * 4; vm = vm->hh_qid.next)
        if (is_preload_of(vm, tpl_qid))
            snprintf(names[n++], sizeof names[0], "%s", vm->name);
    for (int i = 0; i < n; i++) {
        struct dispvm d = { .domain = true, .record = true };
        snprintf(d.name, sizeof d.name, "%s", names[i]);
        snprintf(d.rundir, sizeof d.rundir, "%s/vms/%s", q->cfg.run_dir, names[i]);
        if (teardown(q, &d, err) < 0)
            return -1;
    }
    return 0;
}

int dispvm_preload_fill(struct qubes *q, const char *template_name, FILE *progress,
                        struct qerr *err)
{
    char dvm[64], why[512];
    int lock = global_lock(q, err);
    if (lock < 0)
        return -1;
    int rc = qubes_load_for_reading(q, err);
    struct qvm *tpl = rc == 0 ? template_of(q, template_name, err) : NULL;
    bool usable = false;
    if (!tpl || dvm_name(tpl->name, dvm, sizeof dvm, err) < 0 ||
        dispvm_savefile_state(q, tpl->name, &usable, why, sizeof why, err) < 0)
        rc = -1;
    if (rc == 0 && !usable)
        rc = qerr_set(err, "no preloading: %s", why);
    int tpl_qid = tpl ? tpl->qid : -1;
    int want = rc == 0 ? preload_target(q) : 0, have = 0;
    for (struct qvm *vm = rc == 0 ? q->coll->by_qid : NULL; vm; vm = vm->hh_qid.next)
        if (is_preload_of(vm, tpl_qid))
            have++;
    struct dispvm_request r = { .source = "dom0", .label = "gray", .progress = progress };
    while (rc == 0 && have < want) {
        struct dispvm d = { 0 };
        if (enough_memory(q, err) < 0) {
            rc = qerr_prefix(err, "no more preloads");
            break;
        }
        if (restore(q, &r, tpl_qid, dvm, true, &d, err) < 0) {
            struct qerr e2;
            teardown(q, &d, &e2);
            rc = -1;
            break;
        }
        qsay(progress, "--> Preloaded %s (paused)", d.name);
        have++;
        if (qubes_load_for_reading(q, err) < 0)
            rc = -1;
    }
    close(lock);
    return rc;
}

/* A replacement is prepared in the background: a detached grandchild, so
 * that the request does not wait for it. */
/* A detached process keeps none of its caller's descriptors: an inherited
 * pipe would keep the caller from seeing end-of-file until it exits. */
static void detach_stdio(void)
{
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
    }
    close_range(3, ~0U, 0);
}

/* Starts a detached process: a session of its own, reparented (forked
 * twice, the middle one reaped here), none of the caller's descriptors,
 * SIGTERM, SIGINT and SIGHUP set to `on_stop`. Returns 0 in that process,
 * 1 in the caller once it exists, -1 when it could not be started. */
static int detach(void (*on_stop)(int))
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid != 0) {
        int st = 1;
        if (pid > 0)
            waitpid(pid, &st, 0);
        return pid > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 1 : -1;
    }
    setsid();
    signal(SIGTERM, on_stop);
    signal(SIGINT, on_stop);
    signal(SIGHUP, on_stop);
    pid_t grandchild = fork();
    if (grandchild != 0)
        _exit(grandchild > 0 ? 0 : 1);
    detach_stdio();
    return 0;
}

static void replenish_in_background(const char *template_name)
{
    if (detach(SIG_DFL) != 0)
        return;
    struct qubes q;
    struct qerr err;
    if (qubes_open(&q, false, &err) == 0)
        dispvm_preload_fill(&q, template_name, NULL, &err);
    qubes_close(&q);
    _exit(0);
}

/* The teardown once the service has ended, in a detached process (the
 * caller has its exit status meanwhile), with a connection of its own:
 * our libvirt connection is not the child's to use. Returns -1 when no
 * process could be started: then the caller tears down itself. */
static int teardown_detached(struct qubes *q, const struct dispvm *d)
{
    char log[PATH_MAX + 32];
    snprintf(log, sizeof log, "%s/dispvm-teardown.log", q->cfg.run_dir);
    int r = detach(SIG_IGN);
    if (r != 0)
        return r > 0 ? 0 : -1;
    struct qubes q2;
    struct qerr e;
    struct dispvm mine = *d;
    if (qubes_open(&q2, false, &e) < 0 || teardown(&q2, &mine, &e) < 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd >= 0) {
            dprintf(fd, "%lld %s: %s\n", (long long)time(NULL), d->name, e.msg);
            close(fd);
        }
    }
    qubes_close(&q2);
    _exit(0);
}

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    stop_signal = sig;
}

/* The service session runs in a child; we wait for it or for a signal. */
static int serve(const struct dispvm_request *r, struct dispvm *d, const char *layout,
                 int *status, struct qerr *err)
{
    char sock[PATH_MAX + 16];
    snprintf(sock, sizeof sock, "%s/agent.sock", d->rundir);
    pid_t pid = fork();
    if (pid < 0)
        return qerr_errno(err, errno, "fork");
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);   /* never outlive qfile-daemon-dvm */
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        struct agent_conn c;
        struct qerr e;
        int st = 0;
        char ip[24];
        const char *user = r->user && strcmp(r->user, "DEFAULT") != 0 ? r->user : "user";
        /* The guest learns it was restored as another VM: its name, MAC
         * and address, before anything runs in it. */
        snprintf(ip, sizeof ip, "%s/%d", d->net.ip, d->net.prefix);
        if (agent_connect(sock, 30000, &c, &e) < 0 ||
            agent_identity(&c, d->name, d->net.on ? d->net.mac : "", d->net.on ? ip : "",
                           d->net.gateway, &e) < 0 ||
            (layout[0] && qmonitor_send_on(&c, layout, &e) < 0) ||
            (r->command ? agent_exec(&c, user, r->command, 0, 1, 2, &st, &e)
                        : agent_service(&c, user, r->service, r->source, 0, 1, 2, &st, &e)) < 0) {
            fprintf(stderr, "qfile-daemon-dvm: %s: %s\n", d->name, e.msg);
            _exit(125);
        }
        _exit(st & 0xff);
    }
    int st;
    for (;;) {
        pid_t w = waitpid(pid, &st, 0);
        if (w == pid)
            break;
        if (w < 0 && errno == EINTR && stop_signal) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return qerr_set(err, "stopped by signal %d", (int)stop_signal);
        }
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) == 125)
        return qerr_set(err, "the service could not run in %s", d->name);
    *status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return 0;
}

int dispvm_run(struct qubes *q, const struct dispvm_request *r, int *status, struct qerr *err)
{
    struct sigaction sa = { .sa_handler = on_signal };
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    char dvm[64], why[512], tname[QUBES_NAME_MAX + 1];
    struct dispvm d = { 0 };
    if (qubes_load_for_reading(q, err) < 0)
        return -1;
    struct qvm *tpl = template_of(q, r->template_name, err);
    if (!tpl || dvm_name(tpl->name, dvm, sizeof dvm, err) < 0)
        return -1;
    snprintf(tname, sizeof tname, "%s", tpl->name);
    if (strcmp(r->source, "dom0") != 0 && !qvm_collection_by_name(q->coll, r->source))
        return qerr_set(err, "source VM '%s' does not exist", r->source);

    int lock = global_lock(q, err);
    if (lock < 0)
        return -1;
    bool usable;
    int rc = dispvm_savefile_state(q, tname, &usable, why, sizeof why, err);
    if (rc == 0 && !usable) {
        if (!r->regenerate) {
            rc = qerr_set(err, "the DispVM savefile cannot be used: %s (run "
                          "qvm-create-default-dvm %s)", why, tname);
        } else {
            qsay(r->progress, "--> Savefile unusable (%s): making it again", why);
            close(lock);
            if (dispvm_prepare(q, tname, r->progress, err) < 0)
                return -1;
            if ((lock = global_lock(q, err)) < 0)
                return -1;
        }
    }
    if (rc == 0 && qubes_load_for_reading(q, err) < 0)
        rc = -1;
    if (rc == 0 && !(tpl = qubes_find_vm(q, tname, err)))
        rc = -1;
    if (rc == 0)
        rc = claim_preload(q, r, tpl->qid, &d, err);
    if (rc == 1)        /* none ready: restore one now, if the host has the memory */
        rc = enough_memory(q, err) < 0 ? -1 : restore(q, r, tpl->qid, dvm, false, &d, err);
    bool preloading = rc == 0 && q->coll && preload_target(q) > 0;
    close(lock);
    if (preloading)
        replenish_in_background(tname);
    /* The service needs no hypervisor connection: closing it now spares the
     * caller waiting, at our exit, for a daemon busy with the teardown. A
     * teardown here reconnects. */
    vmm_close(&q->vmm);
    /* Its GUI starts with it: the monitor layout goes first. */
    char layout[QMONITOR_MAX * 32] = "";
    struct qerr le;
    if (rc == 0 && qmonitor_layout(&q->cfg, layout, sizeof layout, NULL, &le) < 0)
        qsay(r->progress, "warning: %s", le.msg);
    if (rc == 0 && !stop_signal)
        rc = serve(r, &d, layout, status, err);
    else if (rc == 0)
        rc = qerr_set(err, "stopped by signal %d", (int)stop_signal);
    struct qerr e2;
    if (rc == 0 && !r->wait_teardown && !stop_signal)
        return teardown_detached(q, &d) == 0 ? 0 : teardown(q, &d, err);
    if (teardown(q, &d, rc < 0 ? &e2 : err) < 0 && rc == 0)
        rc = -1;
    return rc;
}

/* ---- cleanup ---- */

static bool is_dispvm_name(const char *n)
{
    if (strncmp(n, "disp", 4) != 0 || !n[4])
        return false;
    for (const char *p = n + 4; *p; p++)
        if (*p < '0' || *p > '9')
            return false;
    return true;
}

int dispvm_cleanup(struct qubes *q, int *removed, FILE *progress, struct qerr *err)
{
    *removed = 0;
    if (qubes_load_for_writing(q, false, err) < 0)
        return -1;
    /* Records of DispVMs whose domain is gone. */
    size_t n;
    struct qvm **vms = qvm_collection_sorted(q->coll, &n);
    bool changed = false;
    for (size_t i = 0; vms && i < n; i++) {
        if (vms[i]->cls != QVM_DISP)
            continue;
        enum qvm_power st;
        if (qubes_vm_state(q, vms[i], &st, err) < 0) {
            free(vms);
            qubes_unlock(q);
            return -1;
        }
        char rundir[PATH_MAX];
        snprintf(rundir, sizeof rundir, "%s/vms/%s", q->cfg.run_dir, vms[i]->name);
        /* With preloading off, waiting preloads are not wanted any more. */
        bool unwanted = qvm_get_bool(vms[i], "preload", false) && preload_target(q) == 0;
        bool orphan = st != QVM_POWER_HALTED && (unwanted || !owner_alive(rundir));
        if (st == QVM_POWER_HALTED || orphan) {
            if (st != QVM_POWER_HALTED)
                vmm_destroy(&q->vmm, vms[i]->name, NULL);
            remove_runtime(rundir);
            qsay(progress, "--> Removed %s (%s)", vms[i]->name,
                !orphan ? "not running" : unwanted ? "a preload, and preloading is off"
                                                   : "the process that ran it is gone");
            qvm_collection_remove(q->coll, vms[i]);
            qvm_free(vms[i]);
            changed = true;
            (*removed)++;
        }
    }
    free(vms);
    /* Domains and files of DispVMs without a record: ours are the ones
     * with a runtime directory here. */
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/vms", q->cfg.run_dir);
    DIR *dh = opendir(dir);
    struct dirent *e;
    while (dh && (e = readdir(dh))) {
        if (!is_dispvm_name(e->d_name) || qvm_collection_by_name(q->coll, e->d_name))
            continue;
        struct vmm_domain info;
        if (vmm_domain_info(&q->vmm, e->d_name, &info, err) == 0 &&
            info.state != QVM_POWER_HALTED) {
            vmm_destroy(&q->vmm, e->d_name, NULL);
            qsay(progress, "--> Destroyed the leftover domain %s", e->d_name);
        }
        free(info.name);
        char path[PATH_MAX + 300];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        remove_runtime(path);
        qsay(progress, "--> Removed the files of %s", e->d_name);
        (*removed)++;
    }
    if (dh)
        closedir(dh);
    /* Memory files no savefile and no DispVM uses, and those of a
     * preparation that died (its dvm VM is not running). */
    vms = qvm_collection_sorted(q->coll, &n);
    for (size_t i = 0; vms && i < n; i++) {
        enum qvm_power st;
        if (vms[i]->cls != QVM_DISP && qubes_vm_state(q, vms[i], &st, NULL) == 0) {
            int gone = dispvm_ram_gc(q, vms[i]->name, st == QVM_POWER_HALTED);
            if (gone)
                qsay(progress, "--> Removed %d unused memory file(s) of %s", gone, vms[i]->name);
        }
    }
    free(vms);
    if (changed)
        return qubes_save_and_unlock(q, err);
    qubes_unlock(q);
    return 0;
}

int dispvm_forget(struct qubes *q, const char *dvm)
{
    static const char *const parts[] = { "savefile", "root.qcow2", "private.img", "meta" };
    char path[PATH_MAX], target[PATH_MAX];
    if (qvm_check_name(dvm, NULL) < 0)
        return 0;
    dvm_path(q, dvm, "savefile", path, sizeof path);
    int had = access(path, F_OK) == 0;
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++) {
        dvm_path(q, dvm, parts[i], path, sizeof path);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/%s.savefile", DISPVM_RAM_DIR, dvm);
    unlink(path);
    /* The original's links, when they named what is gone now. */
    char links[2][PATH_MAX];
    snprintf(links[0], sizeof links[0], "%s/dvmdata/default-savefile", q->cfg.base_dir);
    snprintf(links[1], sizeof links[1], "%s/current-savefile", DISPVM_RAM_DIR);
    for (int i = 0; i < 2; i++) {
        ssize_t n = readlink(links[i], target, sizeof target - 1);
        if (n > 0 && (target[n] = '\0', strstr(target, dvm)) && access(target, F_OK) != 0)
            unlink(links[i]);
    }
    dispvm_ram_gc(q, dvm, true);
    return had;
}
