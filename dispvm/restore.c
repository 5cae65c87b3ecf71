#include "restore.h"
#include "../orchestrator/agent_client.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../orchestrator/firewall.h"
#include "../orchestrator/lifecycle.h"
#include "../orchestrator/runtime.h"
#include "../orchestrator/timing.h"
#include "../orchestrator/util.h"
#include "../orchestrator/vmguard.h"
#include "../qrexec/daemon.h"
#include "../storage/storage.h"
#include "remote.h"
#include "savefile.h"
#include "shmem.h"

int dispvm_enough_memory(struct vmm *vmm, struct qerr *err)
{
    long need = DISPVM_MIN_FREE_MIB;
    const char *env = getenv("QUBES_DISPVM_MIN_FREE_MIB");
    if (env && *env && qparse_int(env, 0, 1L << 40, &need) < 0)
        return qerr_set(err, "QUBES_DISPVM_MIN_FREE_MIB=\"%s\": not a number of MiB", env);
    struct vmm_host host;
    if (vmm_host_info(vmm, &host, err) < 0)
        return -1;
    if ((long long)(host.free_kib / 1024) < need)
        return qerr_set(err, "not enough memory for a DispVM: the host has %llu MiB free, "
                        "%ld MiB are needed (QUBES_DISPVM_MIN_FREE_MIB; the host is %s)",
                        host.free_kib / 1024, need, vmm->uri);
    return 0;
}

/* ---- the name ---- */

/* The next dispid, from a counter file under its own lock: 1..253 in turn.
 * A DispVM's MAC ends in its dispid and its address is .(dispid % 254 + 1),
 * so no two running ones share either and none takes the gateway's .1. */
static int next_dispid(const struct qubes_config *cfg, struct qerr *err)
{
    char path[PATH_MAX], text[32] = "";
    if (dvmdata_path(cfg, DVMDATA_DISPID, path, sizeof path, err) < 0)
        return -1;
    cleanup_close int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return qerr_errno(err, errno, "cannot open %s", path);
    while (flock(fd, LOCK_EX) < 0 && errno == EINTR)
        ;
    ssize_t n = pread(fd, text, sizeof text - 1, 0);
    int id = n > 0 ? atoi(text) : 0;
    id = id > 0 && id < DISPVM_MAX_DISPID ? id + 1 : 1;
    int len = snprintf(text, sizeof text, "%d\n", id);
    if (pwrite(fd, text, (size_t)len, 0) != len || ftruncate(fd, len) < 0)
        return qerr_errno(err, errno, "cannot update %s", path);
    return id;
}

/* Domain names are host-wide: a dispid whose name another database (or a
 * leftover) holds is skipped. */
static bool name_taken(struct vmm *vmm, const char *name, struct qerr *err, int *rc)
{
    struct vmm_domain info;
    if ((*rc = vmm_domain_info(vmm, name, &info, err)) < 0)
        return true;
    free(info.name);
    return info.state != QVM_POWER_HALTED;
}

static int pick_name(struct qubes *q, struct vmm *vmm, struct dispvm_state *d, struct qerr *err)
{
    for (int tries = 0;; tries++) {
        char name[16];
        int rc, dispid = next_dispid(&q->cfg, err);
        if (dispid < 0)
            return -1;
        snprintf(name, sizeof name, "disp%d", dispid);
        /* A record (a DispVM on another host), a domain here, or one on the
         * host it goes to (a leftover there). */
        rc = 0;
        bool taken = qvm_collection_by_name(q->coll, name) ||
                     name_taken(&q->vmm, name, err, &rc) ||
                     (vmm != &q->vmm && rc == 0 && name_taken(vmm, name, err, &rc));
        if (rc < 0)
            return -1;
        if (!taken)
            return dispvm_state_name(d, &q->cfg, q->coll, name, dispid, err);
        if (tries == DISPVM_MAX_DISPID)
            return qerr_set(err, "no free DispVM name: all of disp1..disp%d are taken",
                            DISPVM_MAX_DISPID);
    }
}

/* A layer of the DispVM over a disk of the set: a copy of the set's empty
 * layer, or (a set made before those existed) a new one by qemu-img. */
static int layer(const char *empty, const char *disk, const char *fmt, const char *out,
                 struct qerr *err)
{
    if (access(empty, R_OK) == 0)
        return storage_clone_layer(empty, out, err);
    return storage_create_layer(disk, fmt, out, err);
}

/* Its run directory, who owns it, and its own layers over the disks as
 * they were at the save: its memory and its disks agree, and it sees no
 * other DispVM's writes. */
static int make_files(struct dispvm_state *d, struct qerr *err)
{
    const struct dvmdata *set = &d->tpl->set;
    qubes_new_uuid(d->uuid);
    qubes_new_uuid(d->genid);
    if (qmkdirs(d->rundir, err) < 0 || dispvm_own(d, err) < 0)
        return -1;
    /* On another host its disks are volumes there (dispvm/remote.h); the
     * run directory says which host, for a sweep that finds no record. */
    if (d->host[0]) {
        char path[PATH_MAX + 8];
        snprintf(path, sizeof path, "%s/" QRT_HOST, d->rundir);
        return qwrite_file(path, d->host, strlen(d->host), 0644, false, err);
    }
    if (layer(set->root_layer, set->root, "qcow2", d->root_layer, err) < 0 ||
        layer(set->priv_layer, set->priv, "raw", d->private_layer, err) < 0)
        return -1;
    /* QEMU's from the start: libvirt is told to leave them alone
     * (layer_chains), and so has nothing of them to give back once the
     * domain ends, when they may be gone already. */
    uid_t u;
    gid_t g;
    qemulator_ids(&u, &g);
    const char *layers[] = { d->root_layer, d->private_layer };
    for (int i = 0; i < 2 && geteuid() == 0; i++)
        if (fchownat(AT_FDCWD, layers[i], u, g, AT_SYMLINK_NOFOLLOW) < 0)
            return qerr_errno(err, errno, "cannot give %s to QEMU's user", layers[i]);
    return 0;
}

/* The files under a DispVM's layers, for libvirt to take as they are:
 * the root layer is over the set's root (a layer over its template's root
 * image) and the private one over the set's private image. The backing
 * file the set's root names is checked against the template's record:
 * no header says which host file libvirt hands QEMU. The backing files
 * stay root's, read by QEMU's group: no DispVM's QEMU writes what the
 * others, or its template's VMs, are made of. The strings live in `troot`
 * and `label`. */
static int layer_chains(struct qubes *q, const struct dispvm_state *d, char *troot, size_t len,
                        char *label, size_t label_len, struct savefile_identity *id,
                        struct qerr *err)
{
    const struct dvmdata *set = &d->tpl->set;
    const struct qvm *t = dispvm_template_vm(q->coll, d->tpl);
    char named[PATH_MAX], fmt[16];
    struct stat a, b;
    if (!t)
        return qerr_set(err, "template '%s' is gone", d->tpl->name);
    if (qubes_vm_image(q, t, "root_img", "root.img", troot, len, err) < 0)
        return -1;
    int rc = storage_qcow2_backing(set->root, named, sizeof named, fmt, sizeof fmt, err);
    if (rc < 0)
        return -1;
    if (rc == 1 || strcmp(fmt, "raw") != 0 || stat(named, &a) < 0 || stat(troot, &b) < 0 ||
        !qstat_same(&a, &b))
        return qerr_set(err, "%s is not a layer over %s, the root image of '%s' (it names "
                        "'%s', format '%s'): make the savefile again (qvm-create-default-dvm %s)",
                        set->root, troot, t->name, named, fmt, t->name);
    const char *files[] = { set->root, set->priv, troot };
    for (int i = 0; i < 3; i++)
        if (storage_backing_readonly(files[i], err) < 0)
            return -1;
    qemulator_backing_label(label, label_len);
    id->chains[0] = (struct savefile_chain){ 2, { set->root, troot }, { "qcow2", "raw" } };
    id->chains[1] = (struct savefile_chain){ 1, { set->priv }, { "raw" } };
    id->image_label = label;
    return 0;
}

/* ---- the record (under the write lock) ---- */

int dispvm_inherit_firewall(struct qubes *q, const struct qvm *vm, const struct qvm *from,
                            long long *next_expiry, struct qerr *err)
{
    char src[PATH_MAX], dst[PATH_MAX];
    struct qfw fw;
    qfw_defaults(&fw);
    if (from && (qfw_path(q, from, src, sizeof src, err) < 0 || qfw_load(src, &fw, err) < 0))
        return qerr_prefix(err, "the firewall rules of '%s'", from->name);
    int rc = qfw_path(q, vm, dst, sizeof dst, err) < 0 ? -1 : qfw_write(q, dst, &fw, err);
    if (next_expiry)
        *next_expiry = qfw_next_expiry(&fw, (long long)time(NULL));
    qfw_free(&fw);
    return rc;
}

static int set_num(struct qvm *vm, const char *attr, int n, struct qerr *err)
{
    char num[16];
    snprintf(num, sizeof num, "%d", n);
    return qvm_set_attr(vm, attr, n >= 0 ? num : "none", err);
}

/* The QubesDisposableVm record, on the network T-dvm was saved on, in
 * the write transaction: refused while its template runs (under the
 * host-wide start lock the caller holds, as every start's check). */
static int add_record(struct qubes *q, struct dispvm_state *d, struct qerr *err)
{
    int qid = qvm_collection_alloc_qid(q->coll, err);
    int netvm = d->net.on ? d->netvm_qid : -1;
    struct qvm *vm = qid < 0 ? NULL : qvm_new(QVM_DISP);
    if (!vm)
        return qid < 0 ? -1 : qerr_errno(err, ENOMEM, "a record for %s", d->name);
    int rc = set_num(vm, "qid", qid, err) < 0 || qvm_set_attr(vm, "name", d->name, err) < 0 ||
             set_num(vm, "dispid", d->dispid, err) < 0 ||
             set_num(vm, "template_qid", d->tpl->qid, err) < 0 ||
             qvm_set_attr(vm, "label", d->label, err) < 0 ||
             qvm_set_attr(vm, "firewall_conf", "firewall.xml", err) < 0 ||
             qvm_set_attr(vm, "uuid", d->uuid, err) < 0 ||
             set_num(vm, "netvm_qid", netvm, err) < 0 ||
             qvm_set_attr(vm, "uses_default_netvm", "False", err) < 0 ||
             (d->host[0] && qvm_set_attr(vm, "host", d->host, err) < 0) ||
             /* A preload waits, paused and internal, for a request to claim it. */
             (d->preload && (qvm_set_attr(vm, "internal", "True", err) < 0 ||
                             qvm_set_attr(vm, "preload", "True", err) < 0)) ? -1 : 0;
    if (rc == 0 && qvm_collection_add(q->coll, vm, err) < 0)
        rc = -1;
    if (rc < 0) {
        qvm_free(vm);
        return -1;
    }
    if (qubes_template_exclusion(q, vm, err) < 0) {
        qvm_collection_remove(q->coll, vm);
        qvm_free(vm);
        return qerr_prefix(err, "no DispVM of '%s' now", d->tpl->name);
    }
    /* The rules of the VM that asked (T-dvm's when it is not in the
     * database). */
    const struct qvm *src = dispvm_source_vm(q->coll, d);
    if ((d->net.on && vmm_network_ensure(&q->vmm, d->net.bridge, err) < 0) ||
        dispvm_inherit_firewall(q, vm, src ? src : dispvm_dvm_vm(q->coll, d->tpl),
                                &d->fw_next, err) < 0 ||
        (d->net.on && vmguard_up(q, vm, err) < 0)) {
        qvm_collection_remove(q->coll, vm);
        qvm_free(vm);
        return -1;
    }
    return 0;
}

/* ---- the domain (its record saved: no database lock held) ---- */

/* A full-image savefile: a clone of it with the DispVM's identity, fed
 * through a FIFO (no copy, QUBES_DISPVM_FEED=fifo), or, when the restore
 * refuses that, from a copy. */
static int restore_clone(struct qubes *q, const struct dispvm_state *d, const char *from,
                         const struct savefile_identity *id, struct qerr *err)
{
    struct qerr e;
    const char *feed = getenv("QUBES_DISPVM_FEED");
    pid_t writer = feed && strcmp(feed, "fifo") == 0 ? savefile_feed(from, d->clone, id, &e) : 0;
    if (writer > 0) {
        int rc = vmm_restore(&q->vmm, d->clone, &e);
        kill(writer, SIGKILL);      /* finished already, unless the restore failed */
        waitpid(writer, NULL, 0);
        unlink(d->clone);
        if (rc == 0)
            return 0;
    }
    if (writer < 0 || (writer > 0 && feed))
        qsay(d->progress, "--> Restoring from a copy (through a pipe: %s)", e.msg);
    if (savefile_clone(from, d->clone, id, err) < 0)
        return -1;
    int rc = vmm_restore(&q->vmm, d->clone, err);
    unlink(d->clone);
    return rc;
}

/* A preload's emulator yields to requests (DISPVM_PRELOAD_NICE). */
static void preload_nice(struct vmm *vmm, const struct dispvm_state *d)
{
    struct qerr e;
    if (d->preload && vmm_domain_nice(vmm, d->name, DISPVM_PRELOAD_NICE, &e) < 0)
        qsay(d->progress, "warning: %s", e.msg);
}

/* A shared-memory savefile: the DispVM maps its RAM file copy-on-write
 * and receives the saved device state; it is paused when this returns. */
static int restore_shared(struct qubes *q, const struct dispvm_state *d,
                          const struct savefile_info *si, const char *from, const char *ram,
                          struct savefile_identity *id, struct qerr *err)
{
    char stub[PATH_MAX];
    if (dispvm_ram_check(ram, err) < 0 || dispvm_ram_claim(d->ram, ram, err) < 0 ||
        dispvm_boot_stub(&q->cfg, stub, sizeof stub, err) < 0)
        return -1;
    id->private_ram = true;
    id->boot_stub = stub;
    cleanup_free char *xml = savefile_domain_xml(si->xml, id, err);
    if (!xml)
        return -1;
    /* Mapped shared, the DispVM would write into every other's memory. */
    if (strstr(xml, "share=on"))
        return qerr_set(err, "cannot map %s copy-on-write for %s", ram, d->name);
    if (vmm_restore_device_state(&q->vmm, xml, from, (long long)si->stream_offset, err) < 0)
        return -1;
    preload_nice(&q->vmm, d);
    return 0;
}

/* *paused: the domain waits for its first vmm_resume (else it runs). */
static int restore_domain(struct qubes *q, struct vmm *vmm, struct dispvm_state *d,
                          bool *paused, struct qerr *err)
{
    if (d->host[0])
        return dispvm_remote_restore(vmm, d, err);
    const char *from = dvmdata_restore_from(&d->tpl->set);
    struct savefile_identity id = {
        .name = d->name, .uuid = d->uuid, .genid = d->genid,
        .disks = { d->root_layer, d->private_layer },
        .formats = { "qcow2", "qcow2" }, .ndisks = 2,
        .agent_socket = d->agent_sock, .serial_log = d->console,
        .mac = d->net.on ? d->net.mac : NULL,
        .ifname = d->net.on ? d->net.ifname : NULL,
        /* A VM's DispVMs may be on another network than T-dvm, or on none:
         * the saved NIC then stays, without carrier, on a network of its
         * own. */
        .network = d->net.on ? d->net.bridge : d->tpl->dvm_netvm_qid >= 0 ? QNET_NONE : NULL,
        .link_down = !d->net.on,
    };
    char troot[PATH_MAX], label[32];
    if (layer_chains(q, d, troot, sizeof troot, label, sizeof label, &id, err) < 0)
        return -1;
    if (!d->net.on && d->tpl->dvm_netvm_qid >= 0 &&
        vmm_network_ensure(&q->vmm, QNET_NONE, err) < 0)
        return -1;
    struct savefile_info si;
    char ram[PATH_MAX];
    /* Looked at before it is read: a set replaced in between is seen as
     * changed at the teardown, never the other way round. */
    d->set_seen = stat(d->tpl->set.savefile, &d->set_st) == 0;
    if (savefile_read(from, &si, err) < 0)
        return -1;
    int rc = dispvm_ram_of_xml(si.xml, ram, sizeof ram);
    if (rc < 0)
        qerr_set(err, "%s maps a memory file outside %s", from, QRT_SHM_DIR);
    if (rc == 0) {
        qsay(d->progress, "--> Restoring %s from %s (%s)", d->name, from,
             ram[0] ? "shared memory" : "full memory image");
        d->set_seen = d->set_seen && ram[0];
        rc = ram[0] ? restore_shared(q, d, &si, from, ram, &id, err)
                    : restore_clone(q, d, from, &id, err);
        *paused = rc == 0 && ram[0];
        if (rc == 0 && !ram[0])
            preload_nice(&q->vmm, d);   /* a full image's runs from its restore */
    }
    savefile_info_free(&si);
    if (rc == 0)
        d->has_domain = true;
    return rc;
}

/* Its record, before its domain: from now on the start of its template is
 * refused (a DispVM whose owner is alive counts as running), and a
 * sweep leaves it alone. */
static int register_record(struct qubes *q, struct dispvm_state *d, struct qerr *err)
{
    cleanup_close int start = qrt_lock(&q->cfg, QRT_START_LOCK, err);
    if (start < 0 || qubes_load_for_writing(q, false, err) < 0)
        return -1;
    if (qubes_commit(q, add_record(q, d, err), err) < 0)
        return -1;
    d->has_record = true;
    return 0;
}

/* The savefile was made with the balloon inflated: the memory goes back
 * (the guest deflates it meanwhile, on its own time). */
static void give_memory_back(struct vmm *vmm, const struct dispvm_state *d)
{
    struct vmm_domain info;
    unsigned long want = (unsigned long)d->tpl->memory_mib * 1024;
    if (vmm_domain_info(vmm, d->name, &info, NULL) < 0)
        return;
    free(info.name);
    if (info.mem_kib < want)
        vmm_set_memory(vmm, d->name, want, NULL);
}

void dispvm_emulator_baseline(struct qubes *q, struct dispvm_state *d)
{
    memset(&d->emu0, 0, sizeof d->emu0);
    d->emu_t0 = 0;
    if (!qtime_on() || d->host[0])
        return;
    d->emu_t0 = qnow_ms();
    int pid = d->has_domain ? vmm_domain_pid(&q->vmm, d->name) : 0;
    if (pid > 0 && qproc_threads_cpu(pid, &d->emu0) < 0)
        d->emu_t0 = 0;
}

void dispvm_emulator_report(struct qubes *q, const struct dispvm_state *d)
{
    static const char *const step[QPROC_CLASSES] = {
        [QPROC_MAIN] = "  emulator: main thread",
        [QPROC_VCPU] = "  emulator: vCPU threads",
        [QPROC_OTHER] = "  emulator: other threads",
    };
    struct qproc_cpu now;
    if (!qtime_on() || d->host[0] || !d->emu_t0 || !d->has_domain)
        return;
    int pid = vmm_domain_pid(&q->vmm, d->name);
    if (pid <= 0 || qproc_threads_cpu(pid, &now) < 0)
        return;
    double wall = (double)(qnow_ms() - d->emu_t0);
    /* A thread counted at the baseline may have ended since (QEMU's pool
     * threads come and go): its class then counts from 0, not below. */
    for (int c = 0; c < QPROC_CLASSES; c++) {
        unsigned long long ns = now.ns[c] > d->emu0.ns[c] ? now.ns[c] - d->emu0.ns[c] : 0;
        unsigned long flt = now.faults[c] > d->emu0.faults[c] ? now.faults[c] - d->emu0.faults[c]
                                                              : 0;
        qtime_report(step[c], wall, (double)ns / 1e6, (long)flt, "emulator");
    }
}

int dispvm_restore(struct qubes *q, struct dispvm_state *d, int *set_lock, struct qerr *err)
{
    /* Its gateway runs before it; its start takes the locks it needs. */
    struct vmm *vmm = dispvm_template_vmm(q, d->tpl, err);
    if (!vmm || qubes_netvm_up(q, d->netvm_qid, d->tpl->dvm, d->progress, err) < 0)
        return -1;
    qtime_mark("netvm chain up");
    if (pick_name(q, vmm, d, err) < 0)
        return -1;
    qtime_mark("name (dispid, domain lookup)");
    if (make_files(d, err) < 0)
        return -1;
    qtime_mark("run dir, owner, disk layers");
    if (register_record(q, d, err) < 0)
        return -1;
    qtime_mark("record: start lock, write lock, saved");
    bool paused = false;
    if (!d->preload)
        dispvm_emulator_baseline(q, d);     /* no domain yet: from zero */
    int rc = restore_domain(q, vmm, d, &paused, err);
    qclose(set_lock);       /* its QEMU holds the set's files now */
    qtime_mark(paused ? "domain restored (paused)" : "domain restored, running");
    /* What the guest meets first is made ready before it runs: its qrexec
     * daemon, on the channel already (on another host, through the
     * channel's relay), and its memory target. */
    if (rc == 0 && d->host[0])
        rc = qubes_channel_relay_spawn(d->name, err);
    char fw[PATH_MAX + 16];
    snprintf(fw, sizeof fw, "%s/firewall.xml", d->rundir);
    cleanup_close int answered = -1;
    if (rc == 0 && !vmm_is_test_driver(vmm))
        rc = qrexecd_spawn(d->name, fw, d->fw_next, &answered, err);
    qtime_mark("qrexec-daemon spawned");
    if (rc == 0)
        give_memory_back(vmm, d);
    qtime_mark("balloon: memory back");
    if (rc == 0 && paused) {
        rc = vmm_resume(vmm, d->name, err);
        qtime_mark("resumed");
    }
    if (rc == 0 && answered >= 0) {
        rc = qrexecd_wait_answer(d->name, answered, DISPVM_AGENT_WAIT_MS, err);
        qtime_mark("agent answered (qrexec-daemon up)");
    }
    return rc;
}
